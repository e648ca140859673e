//! `expereon`: the ledger's HTTP server.

fn main() -> anyhow::Result<()> {
    command_api::cli::main()
}

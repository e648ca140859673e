//! The real `expereon` server, built inside the test package (see Cargo.toml).

fn main() -> anyhow::Result<()> {
    command_api::cli::main()
}

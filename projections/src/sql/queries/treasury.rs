//! Treasury: balances (now and as of a moment), their change logs, transactions,
//! withdrawals and refunds.

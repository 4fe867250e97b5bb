//! Errors returned by the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this process) holds the database file.
    /// The CLI should fall back to the running server's API.
    #[error("store {path} is locked by another process (is a SudoMode server running?)")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Creating the parent directory or another filesystem operation failed.
    #[error("store {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing an audit JSON Lines stream failed.
    #[error("audit stream: {0}")]
    Stream(#[source] std::io::Error),
    /// redb reported an error (open, transaction, table, storage, commit).
    #[error("storage: {0}")]
    Storage(String),
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table holding the row.
        table: &'static str,
        /// What was wrong.
        message: String,
    },
    /// An event or record was refused before it was queued.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A group commit failed; every batch in the group failed with it.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The store was closed (or its writer thread stopped).
    #[error("store is closed")]
    Closed,
    /// The store cannot commit right now (a fault it is recovering from).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        StoreError::Storage(e.to_string())
    }

    pub(crate) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            table,
            message: e.to_string(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::storage(e)
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

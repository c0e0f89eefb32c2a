//! Ports: the traits the storage adapters implement for the core.
//!
//! Request/response IO is an `async_trait` trait object (`Arc<dyn Store>`); pushes into
//! adapters are message types owned by the core (see [`crate::connection`]).

use async_trait::async_trait;

use crate::domain::{NewUser, Project, ProjectId, User, UserId};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. a taken username).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Users and their credentials.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; a taken username is [`StoreError::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Finds a user by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// Finds a user and their password hash by username.
    async fn user_with_hash(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;
    /// Lists every user, ordered by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Where the user's notification stream stands.
    async fn notification_cursor(&self, user: UserId) -> Result<NotificationCursor, StoreError>;
}

/// Where a user's notification stream stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotificationCursor {
    /// The highest seq allocated to the user (0 when they have none).
    pub last_seq: i64,
    /// The highest seq any of the user's clients acknowledged.
    pub acked_seq: i64,
    /// The highest seq written to any of the user's sockets.
    pub sent_seq: i64,
}

/// Projects and their members.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Creates a project with the given members; a taken key is [`StoreError::Conflict`].
    async fn create_project(
        &self,
        key: &str,
        name: &str,
        members: &[UserId],
    ) -> Result<Project, StoreError>;
    /// Finds a project by id.
    async fn project_by_id(&self, id: ProjectId) -> Result<Option<Project>, StoreError>;
    /// Finds a project by key.
    async fn project_by_key(&self, key: &str) -> Result<Option<Project>, StoreError>;
    /// Lists every project, or only those `member` belongs to.
    async fn list_projects(&self, member: Option<UserId>) -> Result<Vec<Project>, StoreError>;
    /// Adds members to a project; members already present are kept once.
    async fn add_members(&self, project: ProjectId, members: &[UserId]) -> Result<(), StoreError>;
}

/// Everything the hub stores, behind one object.
#[async_trait]
pub trait Store: UserStore + ProjectStore {
    /// The backend's name (`sqlite` or `postgres`), for logs and health output.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, waiting for in-flight transactions to finish.
    async fn close(&self);
}

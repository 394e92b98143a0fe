//! OAuth scope strings an app requests to write Stratos records through a user's session
//! (atproto granular scopes, as the TypeScript client builds them).

/// The enrollment record's collection.
pub const ENROLLMENT: &str = "zone.stratos.actor.enrollment";
/// The private post collection.
pub const POST: &str = "zone.stratos.feed.post";

/// A record action a `repo:` scope may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoAction {
    /// Create records.
    Create,
    /// Update records.
    Update,
    /// Delete records.
    Delete,
}

impl RepoAction {
    fn as_str(self) -> &'static str {
        match self {
            RepoAction::Create => "create",
            RepoAction::Update => "update",
            RepoAction::Delete => "delete",
        }
    }
}

/// `repo:<collection>` when `actions` holds all three actions (in any order), otherwise
/// `repo:<collection>?action=<a>&action=<b>…` in the order given.
///
/// ```
/// use stratos_client::scopes::{POST, RepoAction, collection_scope};
/// assert_eq!(collection_scope(POST, &[RepoAction::Create]), "repo:zone.stratos.feed.post?action=create");
/// ```
pub fn collection_scope(collection: &str, actions: &[RepoAction]) -> String {
    let all = [RepoAction::Create, RepoAction::Update, RepoAction::Delete]
        .iter()
        .all(|a| actions.contains(a));
    if all {
        return format!("repo:{collection}");
    }
    let query: Vec<String> = actions
        .iter()
        .map(|a| format!("action={}", a.as_str()))
        .collect();
    format!("repo:{collection}?{}", query.join("&"))
}

/// The scopes an app asks for to enroll users and let them post privately: `atproto`, the
/// enrollment record, and creating and deleting posts.
pub fn stratos_scopes() -> Vec<String> {
    vec![
        "atproto".to_owned(),
        collection_scope(
            ENROLLMENT,
            &[RepoAction::Create, RepoAction::Update, RepoAction::Delete],
        ),
        collection_scope(POST, &[RepoAction::Create, RepoAction::Delete]),
    ]
}

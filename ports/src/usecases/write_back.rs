//! Write-back to users' PDSes with their OAuth sessions ([`SessionWriteBack`]): the production
//! [`Deliver`] that [`super::delivery::Delivery`] performs outbox items through.
//!
//! For each item: open the account's session (refreshed first when its access token is about to
//! expire, [`OAuthEnrollment::session`]), call `putRecord` / `deleteRecord` on its PDS with the
//! DPoP-bound token, and keep the session the call returns (a rotated DPoP nonce). A token the
//! PDS refuses is refreshed once and the call retried once. What cannot succeed says so:
//!
//! | what happened | answer to delivery |
//! |---|---|
//! | no session, or the grant is dead (refresh refused) | [`DeliveryFailure::NeedsReauthorization`]; a dead session is forgotten, so `zone.stratos.enrollment.status` shows the account must authorise again |
//! | no session and the account is no longer enrolled (it left without one) | [`DeliveryFailure::Permanent`]: a dead letter, not a wait that never ends |
//! | PDS or authorization server down, 5xx, 429, timeout; storage failed | [`DeliveryFailure::Retry`] |
//! | the PDS refused the write itself (4xx), the PDS address is refused, the record text is not JSON | [`DeliveryFailure::Permanent`] |
//!
//! [`OutboxAction::EndSession`] revokes the session at its authorization server and forgets it,
//! when it was authorised no later than the item says (a re-enrollment's session is kept).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use stratos_domain::oauth::Session;

use super::oauth::{OAuthEnrollment, OAuthFlowError};
use crate::outbox::{OutboxAction, OutboxItem};
use crate::pds::{Deliver, DeliveryFailure};
use crate::pds_client::{PdsClientError, PdsWrite, PdsWriter};

/// Performs outbox items on the account's PDS with its OAuth session.
#[derive(Clone)]
pub struct SessionWriteBack {
    oauth: Arc<OAuthEnrollment>,
    writer: Arc<dyn PdsWriter>,
}

impl std::fmt::Debug for SessionWriteBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWriteBack").finish_non_exhaustive()
    }
}

impl SessionWriteBack {
    /// Write-back over the sessions of `oauth`, writing through `writer` (production: the same
    /// `stratos_network::HttpOAuthClient` as the OAuth client).
    pub fn new(oauth: Arc<OAuthEnrollment>, writer: Arc<dyn PdsWriter>) -> Self {
        Self { oauth, writer }
    }

    async fn call(
        &self,
        session: &Session,
        action: &Write<'_>,
    ) -> Result<PdsWrite, PdsClientError> {
        match action {
            Write::Put {
                collection,
                rkey,
                record,
            } => {
                self.writer
                    .put_record(session, collection, rkey, record)
                    .await
            }
            Write::Delete { collection, rkey } => {
                self.writer.delete_record(session, collection, rkey).await
            }
        }
    }

    /// The call, with one refresh and one retry when the PDS refuses the token.
    async fn write(&self, session: Session, action: &Write<'_>) -> Result<(), DeliveryFailure> {
        let done = match self.call(&session, action).await {
            Err(PdsClientError::TokenRejected(_)) => match self.oauth.refresh(&session).await {
                Ok(fresh) => self.call(&fresh, action).await,
                Err(OAuthFlowError::ReauthorizationRequired(_)) => {
                    return Err(self.forget(&session).await);
                }
                Err(e) => return Err(DeliveryFailure::Retry(e.to_string())),
            },
            other => other,
        };
        match done {
            Ok(write) => {
                if let Some(updated) = write.session {
                    // Only a newer DPoP nonce: losing it costs one extra round trip next time,
                    // so a storage failure here does not fail a write the PDS has made.
                    let _ = self.oauth.save_session(&updated).await;
                }
                Ok(())
            }
            Err(e) => Err(self.client_failure(&session, e).await),
        }
    }

    async fn client_failure(&self, session: &Session, e: PdsClientError) -> DeliveryFailure {
        match e {
            PdsClientError::ReauthorizationRequired(_) => self.forget(session).await,
            // Refused again right after a refresh: a passing fault of the PDS, not proof the
            // grant is dead (the refresh just succeeded).
            PdsClientError::TokenRejected(_)
            | PdsClientError::Transient { .. }
            | PdsClientError::Resolution { .. }
            | PdsClientError::InvalidResponse(_) => DeliveryFailure::Retry(e.to_string()),
            PdsClientError::Rejected { .. }
            | PdsClientError::Refused(_)
            | PdsClientError::OAuth(_)
            | PdsClientError::AuthorizationServer { .. } => {
                DeliveryFailure::Permanent(e.to_string())
            }
        }
    }

    /// No session: an enrolled account may still authorise (its items wait); one that left
    /// without a session never will, so its queued deletes become dead letters an operator sees
    /// instead of waiting forever.
    async fn without_session(&self, did: &stratos_domain::syntax::Did) -> DeliveryFailure {
        match self.oauth.is_enrolled(did).await {
            Ok(true) => DeliveryFailure::NeedsReauthorization,
            Ok(false) => DeliveryFailure::Permanent(
                "the account left without an OAuth session: nothing can be written to its PDS"
                    .into(),
            ),
            Err(e) => DeliveryFailure::Retry(e.to_string()),
        }
    }

    /// The session is dead: forget it (the enrollment shows it must authorise again).
    async fn forget(&self, session: &Session) -> DeliveryFailure {
        forgotten(self.oauth.forget_session(&session.did).await)
    }
}

/// Delivery's answer once a dead session was forgotten (or could not be, for now).
fn forgotten(result: Result<(), OAuthFlowError>) -> DeliveryFailure {
    match result {
        Ok(()) => DeliveryFailure::NeedsReauthorization,
        Err(e) => DeliveryFailure::Retry(e.to_string()),
    }
}

/// The PDS write an item asks for.
enum Write<'a> {
    Put {
        collection: &'a stratos_domain::syntax::Nsid,
        rkey: &'a stratos_domain::syntax::RecordKey,
        record: Value,
    },
    Delete {
        collection: &'a stratos_domain::syntax::Nsid,
        rkey: &'a stratos_domain::syntax::RecordKey,
    },
}

#[async_trait]
impl Deliver for SessionWriteBack {
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryFailure> {
        let write = match &item.action {
            OutboxAction::PutRecord {
                collection,
                rkey,
                record_json,
            } => Write::Put {
                collection,
                rkey,
                record: serde_json::from_str(record_json).map_err(|e| {
                    DeliveryFailure::Permanent(format!("the queued record is not JSON: {e}"))
                })?,
            },
            OutboxAction::DeleteRecord { collection, rkey } => Write::Delete { collection, rkey },
            OutboxAction::EndSession { authorized_by } => {
                return self
                    .oauth
                    .end_session_authorized_by(&item.did, *authorized_by)
                    .await
                    .map_err(|e| DeliveryFailure::Retry(e.to_string()));
            }
        };
        let session = match self.oauth.session(&item.did).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(self.without_session(&item.did).await),
            Err(OAuthFlowError::ReauthorizationRequired(did)) => {
                return Err(forgotten(self.oauth.forget_session(&did).await));
            }
            Err(e) => return Err(DeliveryFailure::Retry(e.to_string())),
        };
        self.write(session, &write).await
    }
}

//! Record writes on the account's PDS ([`PdsWriter`]), and reading a record back.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use stratos_domain::oauth::Session;
use stratos_domain::oauth::form;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::Cause;
use stratos_ports::pds_client::{PdsClientError, PdsRecord, PdsWrite, PdsWriter};

use super::HttpOAuthClient;
use super::transport::{network_error, parse_url, pds_error};

/// The session to hand back when the call changed its nonce.
fn changed(session: &Session, nonce: Option<String>) -> Option<Session> {
    (nonce.is_some() && nonce != session.pds_nonce).then(|| Session {
        pds_nonce: nonce,
        ..session.clone()
    })
}

#[derive(serde::Deserialize)]
struct WriteAnswer {
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    cid: Option<String>,
}

impl HttpOAuthClient {
    async fn write(
        &self,
        session: &Session,
        nsid: &str,
        body: Value,
    ) -> Result<PdsWrite, PdsClientError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| PdsClientError::InvalidResponse(Cause::message(e.to_string())))?;
        let (response, nonce) = self
            .pds_request(session, Method::POST, nsid, None, Some(bytes))
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(pds_error(&response));
        }
        let answer: WriteAnswer = serde_json::from_slice(&response.body).unwrap_or(WriteAnswer {
            uri: None,
            cid: None,
        });
        Ok(PdsWrite {
            uri: answer.uri,
            cid: answer.cid,
            session: changed(session, nonce),
        })
    }

    /// `com.atproto.server.getServiceAuth` on the account's PDS: a service-auth JWT the PDS
    /// signs with the account's key, for `aud` (a service DID) and the one method `lxm`, valid
    /// until `exp` (Unix seconds; the PDS caps it at one hour, and at one minute without `lxm`).
    /// This is how an OAuth client calls another atproto service — such as Stratos — as the
    /// account. The session's scope must grant it (`rpc:{lxm}?aud={aud}` or
    /// `transition:generic`). Returns the token, and the session to store when the PDS's nonce
    /// changed.
    pub async fn service_auth(
        &self,
        session: &Session,
        aud: &str,
        lxm: &Nsid,
        exp: i64,
    ) -> Result<(String, Option<Session>), PdsClientError> {
        let exp = exp.to_string();
        let query = form::encode([("aud", aud), ("lxm", lxm.as_str()), ("exp", exp.as_str())]);
        let (response, nonce) = self
            .pds_request(
                session,
                Method::GET,
                "com.atproto.server.getServiceAuth",
                Some(&query),
                None,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(pds_error(&response));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: String,
        }
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| {
            PdsClientError::InvalidResponse(Cause::message(format!("getServiceAuth: {e}")))
        })?;
        Ok((answer.token, changed(session, nonce)))
    }

    /// `com.atproto.repo.getRecord` on `pds` without credentials (what anyone sees): `None` when
    /// the record does not exist (400 `RecordNotFound`, or 404).
    pub async fn get_record_public(
        &self,
        pds: &str,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<PdsRecord>, PdsClientError> {
        let query = form::encode([
            ("repo", repo.as_str()),
            ("collection", collection.as_str()),
            ("rkey", rkey.as_str()),
        ]);
        let url = parse_url(&format!(
            "{}/xrpc/com.atproto.repo.getRecord?{query}",
            pds.trim_end_matches('/')
        ))?;
        let response = self
            .fetcher
            .request(Method::GET, url, &[("accept", "application/json")], None)
            .await
            .map_err(network_error)?;
        if !(200..300).contains(&response.status) {
            let error = pds_error(&response);
            return match &error {
                PdsClientError::Rejected { status: 404, .. } => Ok(None),
                PdsClientError::Rejected {
                    error: Some(name), ..
                } if name == "RecordNotFound" => Ok(None),
                _ => Err(error),
            };
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            uri: String,
            #[serde(default)]
            cid: Option<String>,
            value: Value,
        }
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| {
            PdsClientError::InvalidResponse(Cause::message(format!("getRecord: {e}")))
        })?;
        Ok(Some(PdsRecord {
            uri: answer.uri,
            cid: answer.cid,
            value: answer.value,
        }))
    }
}

#[async_trait]
impl PdsWriter for HttpOAuthClient {
    async fn put_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
        record: &Value,
    ) -> Result<PdsWrite, PdsClientError> {
        let body = json!({
            "repo": session.did,
            "collection": collection,
            "rkey": rkey,
            "record": record,
        });
        self.write(session, "com.atproto.repo.putRecord", body)
            .await
    }

    async fn delete_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<PdsWrite, PdsClientError> {
        let body = json!({
            "repo": session.did,
            "collection": collection,
            "rkey": rkey,
        });
        self.write(session, "com.atproto.repo.deleteRecord", body)
            .await
    }
}

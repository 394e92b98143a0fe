//! The bodies the client sends the authorization server, as form-encoded text: the pushed
//! authorization request (RFC 9126), the authorization URL the user is sent to, the token
//! requests (authorization code with the PKCE verifier; refresh) and the revocation (RFC 7009).
//! Each includes the client's authentication ([`ClientCredentials::form_params`]).

use super::pkce::CHALLENGE_METHOD;
use super::{AuthorizationState, ClientCredentials, OAuthResult, Session, form};

/// The PAR body of the flow `state` for `scope` (`response_type=code`, PKCE S256, the flow's
/// `state` and `redirect_uri`, `login_hint` when the flow is for a known account or handle).
pub fn par_body(
    client: &ClientCredentials,
    state: &AuthorizationState,
    scope: &str,
    login_hint: Option<&str>,
    now: i64,
) -> OAuthResult<String> {
    let challenge = state.pkce_verifier.challenge();
    let auth = client.form_params(&state.issuer, now)?;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("redirect_uri", &state.redirect_uri),
        ("scope", scope),
        ("state", &state.state),
        ("code_challenge", &challenge),
        ("code_challenge_method", CHALLENGE_METHOD),
    ];
    if let Some(hint) = login_hint {
        pairs.push(("login_hint", hint));
    }
    pairs.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(form::encode(pairs))
}

/// Where the user goes after PAR: the authorization endpoint with `client_id` and the
/// `request_uri` PAR returned (nothing else: the request itself stays with the server).
pub fn authorization_url(
    authorization_endpoint: &str,
    client_id: &str,
    request_uri: &str,
) -> String {
    form::with_query(
        authorization_endpoint,
        [("client_id", client_id), ("request_uri", request_uri)],
    )
}

/// The token request exchanging `code` for the flow `state`.
pub fn code_grant_body(
    client: &ClientCredentials,
    state: &AuthorizationState,
    code: &str,
    now: i64,
) -> OAuthResult<String> {
    let auth = client.form_params(&state.issuer, now)?;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &state.redirect_uri),
        ("code_verifier", state.pkce_verifier.as_str()),
    ];
    pairs.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(form::encode(pairs))
}

/// The token request refreshing `session` with `refresh_token`.
pub fn refresh_grant_body(
    client: &ClientCredentials,
    session: &Session,
    refresh_token: &str,
    now: i64,
) -> OAuthResult<String> {
    let auth = client.form_params(&session.issuer, now)?;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    pairs.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(form::encode(pairs))
}

/// The revocation of `token` (refresh or access token) of `session`.
pub fn revocation_body(
    client: &ClientCredentials,
    session: &Session,
    token: &str,
    now: i64,
) -> OAuthResult<String> {
    let auth = client.form_params(&session.issuer, now)?;
    let mut pairs: Vec<(&str, &str)> = vec![("token", token)];
    pairs.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(form::encode(pairs))
}

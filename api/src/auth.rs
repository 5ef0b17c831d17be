//! Bearer JWT authentication: issuing access/refresh tokens (HS256) and the `Caller`
//! extractor, which loads the caller from the read model on every request so a deactivated
//! user's tokens stop working at once.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
pub use crate::policy::Caller;
use crate::state::AppState;
use projections::users::UserView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (RFC 7519).
    pub sub: String,
    pub token_type: TokenType,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue(&self, user_id: i64, token_type: TokenType) -> Result<String, ApiError> {
        let ttl = match token_type {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        };
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            token_type,
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The user id of a valid, unexpired HS256 token of the wanted type.
    pub fn verify(&self, token: &str, wanted: TokenType) -> Option<i64> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        if claims.token_type != wanted {
            return None;
        }
        claims.sub.parse().ok()
    }
}

/// The user named by the request's `{id}` path parameter, read with the caller (before the
/// handler holds the user's turn to write: a write must check it is still current). A
/// write also gets the user's state to decide on; a read (GET, HEAD) does not need it.
#[derive(Debug, Clone)]
pub struct Prefetched {
    pub view: UserView,
    pub state: Option<domain::User>,
}

/// The request's `{id}` names no user (found out while reading the caller).
#[derive(Debug, Clone, Copy)]
pub struct Absent(pub i64);

/// The id in `/api/v1/users/{id}[/…]`, if the path has one.
fn target_id(parts: &Parts) -> Option<i64> {
    let path = parts.uri.path().trim_end_matches('/');
    let rest = path.strip_prefix("/api/v1/users/")?;
    let id = rest.split('/').next()?;
    id.parse::<i64>().ok().filter(|id| *id > 0)
}

/// The authenticated, active user making the request, loaded from the read model on every
/// request: a deactivated, demoted or moved caller loses the old rights at once.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::NotAuthenticated)?;
        let value = header.to_str().map_err(|_| ApiError::InvalidToken)?;
        let mut words = value.split_whitespace();
        let (Some(scheme), token, None) = (words.next(), words.next(), words.next()) else {
            return Err(ApiError::InvalidToken);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::NotAuthenticated);
        }
        let token = token.ok_or(ApiError::InvalidToken)?;
        let user_id = state
            .tokens
            .verify(token, TokenType::Access)
            .ok_or(ApiError::InvalidToken)?;
        // A request about one user reads the caller and that user in the same round trip;
        // the target waits in the request's extensions for the handler.
        let wanted = target_id(parts);
        let target = wanted.filter(|target| *target != user_id);
        let ids: &[i64] = match target {
            Some(target) => &[user_id, target],
            None => &[user_id],
        };
        let mut found: Vec<(UserView, Option<domain::User>)> = if parts.method.is_safe() {
            let views = state.read.find_many(ids).await?;
            views.into_iter().map(|view| (view, None)).collect()
        } else {
            let found = state.read.find_many_for_write(ids).await?;
            found
                .into_iter()
                .map(|(view, user)| (view, Some(user)))
                .collect()
        };
        if let Some(target) = target {
            if let Some(index) = found.iter().position(|(user, _)| user.id == target) {
                let (view, state) = found.swap_remove(index);
                parts.extensions.insert(Prefetched { view, state });
            } else {
                parts.extensions.insert(Absent(target));
            }
        }
        let (user, user_state) = found.pop().ok_or(ApiError::InvalidToken)?;
        if !user.is_active {
            return Err(ApiError::InactiveUser);
        }
        if wanted == Some(user_id) {
            parts.extensions.insert(Prefetched {
                view: user.clone(),
                state: user_state,
            });
        }
        Ok(Self::new(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"test-secret",
            Duration::from_secs(60),
            Duration::from_secs(120),
        )
    }

    #[test]
    fn a_token_verifies_only_as_its_own_type() {
        let keys = keys();
        let access = keys.issue(42, TokenType::Access).unwrap();
        assert_eq!(keys.verify(&access, TokenType::Access), Some(42));
        assert_eq!(keys.verify(&access, TokenType::Refresh), None);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let other = TokenKeys::new(b"other", Duration::from_secs(60), Duration::from_secs(60));
        let token = other.issue(1, TokenType::Access).unwrap();
        assert_eq!(keys().verify(&token, TokenType::Access), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        let claims = |exp| Claims {
            sub: "1".into(),
            token_type: TokenType::Access,
            iat: now - 100,
            exp,
            jti: "j".into(),
        };
        let sign =
            |c: &Claims| jsonwebtoken::encode(&Header::default(), c, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify(&sign(&claims(now + 60)), TokenType::Access),
            Some(1)
        );
        assert_eq!(
            keys.verify(&sign(&claims(now - 1)), TokenType::Access),
            None
        );
    }

    #[test]
    fn a_token_with_another_algorithm_is_refused() {
        let keys = keys();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "1".into(),
                token_type: TokenType::Access,
                iat: 0,
                exp: chrono::Utc::now().timestamp() + 60,
                jti: "j".into(),
            },
            &keys.encoding,
        )
        .unwrap();
        assert_eq!(keys.verify(&token, TokenType::Access), None);
    }
}

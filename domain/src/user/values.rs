//! Values parsed at the edge. Once built they are valid by construction, so the aggregate
//! trusts them. Events store plain strings and never re-validate, so old events always replay.

use std::fmt;

/// Why a raw value was refused. `Display` is the message the API shows under the field,
/// worded as Django REST Framework words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("This field may not be blank.")]
    Blank,
    #[error("Ensure this field has no more than {0} characters.")]
    TooLong(usize),
    #[error("Ensure this field has at least {0} characters.")]
    TooShort(usize),
    #[error("Enter a valid email address.")]
    InvalidEmail,
    #[error("Ensure this value is greater than or equal to 1.")]
    NotPositive,
    #[error("Null characters are not allowed.")]
    NullCharacter,
}

/// An email address: trimmed, at most 254 characters, `local@domain.tld` in shape.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let email = raw.trim();
        if email.is_empty() {
            return Err(ValueError::Blank);
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if !looks_like_email(email) {
            return Err(ValueError::InvalidEmail);
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is decided on: two addresses differing only in case are one.
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }
}

/// Lower-cases an address for uniqueness checks and look-ups.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A pragmatic subset of Django's `EmailValidator`: one `@`, a local part of printable
/// non-space characters, and a domain of dot-separated alphanumeric/hyphen labels whose last
/// label is not numeric.
fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
    local_ok && domain_ok
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

/// A first or last name: trimmed, not blank, at most 150 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 150;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = raw.trim();
        if name.contains('\0') {
            return Err(ValueError::NullCharacter);
        }
        if name.is_empty() {
            return Err(ValueError::Blank);
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plaintext password on its way to the hasher: 8 to 128 characters, never trimmed,
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let length = raw.chars().count();
        if raw.trim().is_empty() {
            return Err(ValueError::Blank);
        }
        if length < Self::MIN_LEN {
            return Err(ValueError::TooShort(Self::MIN_LEN));
        }
        if length > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// The organisation a user belongs to: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrganisationId(i64);

impl OrganisationId {
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        if raw < 1 {
            return Err(ValueError::NotPositive);
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_normalized_to_lower_case() {
        let email = Email::parse("  Jane@Broker.Example ").unwrap();
        assert_eq!(email.as_str(), "Jane@Broker.Example");
        assert_eq!(email.normalized(), "jane@broker.example");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "plain",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@@example.com",
            "ja ne@example.com",
            "jane@exa mple.com",
            "jane@-example.com",
            "jane@example.123",
            "jane..doe@example.com",
            "ja\0ne@example.com",
        ] {
            assert_eq!(Email::parse(raw), Err(ValueError::InvalidEmail), "{raw}");
        }
        assert_eq!(Email::parse("   "), Err(ValueError::Blank));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(ValueError::TooLong(254)));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Jane ").unwrap().as_str(), "Jane");
        assert_eq!(Name::parse(" \t "), Err(ValueError::Blank));
        assert!(Name::parse(&"é".repeat(150)).is_ok());
        assert_eq!(Name::parse(&"é".repeat(151)), Err(ValueError::TooLong(150)));
        assert_eq!(Name::parse("Ja\0ne"), Err(ValueError::NullCharacter));
    }

    #[test]
    fn passwords_are_bounded_and_never_printed() {
        assert_eq!(Password::parse("short"), Err(ValueError::TooShort(8)));
        assert_eq!(
            Password::parse(&"x".repeat(129)),
            Err(ValueError::TooLong(128))
        );
        let password = Password::parse(" spaced out ").unwrap();
        assert_eq!(password.expose(), " spaced out ");
        assert!(!format!("{password:?}").contains("spaced"));
    }

    #[test]
    fn organisation_ids_are_positive() {
        assert_eq!(OrganisationId::parse(0), Err(ValueError::NotPositive));
        assert_eq!(OrganisationId::parse(7).unwrap().get(), 7);
    }
}

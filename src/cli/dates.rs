//! The date forms `aws cloudfront sign` accepts.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// Parses epoch seconds, RFC 3339 (`2026-12-01T10:00:00+02:00`), or the AWS
/// CLI's `YYYY-MM-DDThh:mm:ss` and `YYYY-MM-DD`, both UTC. Fractions of a
/// second are dropped, as botocore's `int()` drops them.
pub fn parse_date(text: &str) -> Result<u64, String> {
    let seconds = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().map_err(|e| e.to_string())?
    } else if let Ok(moment) = OffsetDateTime::parse(text, &Rfc3339) {
        moment.unix_timestamp()
    } else if let Ok(moment) = PrimitiveDateTime::parse(text, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")) {
        moment.assume_utc().unix_timestamp()
    } else if let Ok(day) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        day.midnight().assume_utc().unix_timestamp()
    } else {
        return Err("expected epoch seconds, RFC 3339, YYYY-MM-DDThh:mm:ss (UTC) or YYYY-MM-DD".to_owned());
    };
    u64::try_from(seconds).map_err(|_| "dates before 1970 cannot be signed".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_the_aws_cli_takes() {
        assert_eq!(parse_date("1767225600"), Ok(1_767_225_600));
        assert_eq!(parse_date("2026-01-01"), Ok(1_767_225_600));
        assert_eq!(parse_date("2026-01-01T00:00:00"), Ok(1_767_225_600));
        assert_eq!(parse_date("2026-01-01T00:00:00Z"), Ok(1_767_225_600));
        assert_eq!(parse_date("2026-01-01T02:00:00+02:00"), Ok(1_767_225_600));
        assert_eq!(parse_date("2026-01-01T00:00:00.900Z"), Ok(1_767_225_600));
        assert!(parse_date("tomorrow").is_err());
        assert!(parse_date("").is_err());
    }
}

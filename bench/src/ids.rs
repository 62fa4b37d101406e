//! Event ids as a homeserver makes them: since room version 4 an event id is `$` and 43
//! characters of a hash, so consecutive events' ids are far apart in any index (what a bridge
//! pays to store its message map). The bench's own events carry their number, scrambled, so
//! that it can be read back.

/// An odd multiplier (so that the scramble is a bijection of `u64`) and its inverse.
const SCRAMBLE: u64 = 0x9E37_79B9_7F4A_7C15;
const UNSCRAMBLE: u64 = 0xF1DE_83E1_9937_733D;

/// The 43 characters after `$` for number `n` (lower-case hex: the first 16 are `n`
/// scrambled, the rest derived from them).
fn hash_part(n: u64) -> String {
    let first = n.wrapping_mul(SCRAMBLE);
    let second = first.wrapping_mul(SCRAMBLE) ^ (first >> 29);
    format!("{first:016x}{second:016x}{:011x}", second >> 20)
}

/// The id of the bench's event number `n` (pushed in transactions).
pub(crate) fn event_id(n: u64) -> String {
    format!("${}", hash_part(n))
}

/// The number of an id made by [`event_id`].
pub(crate) fn event_number(id: &str) -> Option<u64> {
    let hash = id.strip_prefix('$')?;
    let first = u64::from_str_radix(hash.get(..16)?, 16).ok()?;
    let n = first.wrapping_mul(UNSCRAMBLE);
    (id == event_id(n)).then_some(n)
}

/// The id of an event the fake homeserver accepted, the `n`-th (distinct from the bench's
/// own: those are made from numbers counted down from the top).
pub(crate) fn homeserver_event_id(n: u64) -> String {
    event_id(u64::MAX - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_a_homeservers_and_read_back() {
        let id = event_id(5);
        assert_eq!(id.len(), 44);
        assert_eq!(event_number(&id), Some(5));
        assert_eq!(event_number("$e5"), None);
        assert_eq!(event_number(&homeserver_event_id(5)), Some(u64::MAX - 5));
        // Consecutive numbers are far apart.
        assert_ne!(event_id(1)[..4], event_id(2)[..4]);
    }
}

//! Object ids. An id is 32 bytes, written as 64 lowercase hex characters: a
//! 24-byte body and an 8-byte tag. The body of a name's id is a keyed
//! BLAKE3 hash of the name under the namespace's secret (kept in the data
//! directory), so the same name always reaches the same object, also after
//! a restart; the body of a unique id is random. The top bit of the body
//! says which kind it is, so a unique id can never equal a name's id. The
//! tag is a keyed hash of the body under the same secret: an id minted by
//! another namespace (or mistyped) is refused instead of silently reaching
//! an empty object.

/// Bytes of an id's body; the rest is its tag.
const ID_BODY: usize = 24;

/// The top bit of an id's first byte: set in unique ids, clear in names' ids.
const UNIQUE_BIT: u8 = 0x80;

/// A new random id of the namespace with `secret` (192 random bits),
/// different from every name's id.
pub(crate) fn unique_id(secret: &[u8; 32]) -> [u8; 32] {
    let mut body: [u8; ID_BODY] = rand::random();
    body[0] |= UNIQUE_BIT;
    seal(secret, body)
}

/// The id of the object called `name` in the namespace with `secret`.
pub(crate) fn name_id(secret: &[u8; 32], name: &str) -> [u8; 32] {
    let hash = blake3::Hasher::new_keyed(secret)
        .update(b"dohost name\0")
        .update(name.as_bytes())
        .finalize();
    let mut body = [0u8; ID_BODY];
    body.copy_from_slice(&hash.as_bytes()[..ID_BODY]);
    body[0] &= !UNIQUE_BIT;
    seal(secret, body)
}

/// The id with `body`, sealed with the tag of the namespace with `secret`.
fn seal(secret: &[u8; 32], body: [u8; ID_BODY]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..ID_BODY].copy_from_slice(&body);
    id[ID_BODY..].copy_from_slice(&tag(secret, &body));
    id
}

/// The tag of an id with `body` in the namespace with `secret`.
fn tag(secret: &[u8; 32], body: &[u8]) -> [u8; 32 - ID_BODY] {
    let hash = blake3::Hasher::new_keyed(secret)
        .update(b"dohost tag\0")
        .update(body)
        .finalize();
    let mut tag = [0u8; 32 - ID_BODY];
    tag.copy_from_slice(&hash.as_bytes()[..32 - ID_BODY]);
    tag
}

/// The 32 bytes of an id written as 64 hex characters (either case).
pub(crate) fn parse_id(hex: &str) -> Option<[u8; 32]> {
    let mut id = [0u8; 32];
    (hex.len() == 64 && hex::decode_to_slice(hex, &mut id).is_ok()).then_some(id)
}

/// Whether the namespace with `secret` minted `id`.
pub(crate) fn minted_by(secret: &[u8; 32], id: &[u8; 32]) -> bool {
    id[ID_BODY..] == tag(secret, &id[..ID_BODY])
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn a_name_always_gets_the_same_id_of_its_namespace() {
        assert_eq!(name_id(&A, "counter"), name_id(&A, "counter"));
        assert_ne!(name_id(&A, "counter"), name_id(&A, "counter2"));
        assert_ne!(name_id(&A, "counter"), name_id(&B, "counter"));
        assert_eq!(name_id(&A, "x")[0] & UNIQUE_BIT, 0);
    }

    #[test]
    fn unique_ids_differ_and_never_look_like_names() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| unique_id(&A)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id[0] & UNIQUE_BIT != 0 && minted_by(&A, id))
        );
    }

    #[test]
    fn only_the_minting_namespace_accepts_an_id() {
        for id in [name_id(&A, "n"), unique_id(&A)] {
            assert!(minted_by(&A, &id));
            assert!(!minted_by(&B, &id));
            let mut altered = id;
            altered[0] ^= 1;
            assert!(!minted_by(&A, &altered));
        }
    }

    #[test]
    fn ids_parse_from_64_hex_characters_of_either_case() {
        let id = name_id(&A, "n");
        let hex = hex::encode(id);
        assert_eq!(parse_id(&hex), Some(id));
        assert_eq!(parse_id(&hex.to_uppercase()), Some(id));
        assert_eq!(parse_id(&hex[1..]), None);
        assert_eq!(parse_id(&format!("{hex}0")), None);
        assert_eq!(parse_id(&hex.replace(&hex[..1], "g")), None);
    }
}

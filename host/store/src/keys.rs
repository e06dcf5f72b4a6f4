//! How rows are keyed. Every table keyed by object starts its keys with the
//! 36-byte [`ObjectKey`] (namespace number, big-endian, then the object id),
//! so an object's rows are one contiguous range and a namespace's rows one
//! range of those. Keys compare bytewise; each encoding below keeps that
//! order equal to the order of what it encodes.

/// Length of an object key: namespace number (4) + object id (32).
pub(crate) const OBJECT_KEY_LEN: usize = 36;

/// The storage identity of one object: namespace number and object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey([u8; OBJECT_KEY_LEN]);

impl ObjectKey {
    /// The key of object `id` of namespace `namespace`.
    pub fn new(namespace: u32, id: &[u8; 32]) -> Self {
        let mut k = [0u8; OBJECT_KEY_LEN];
        k[..4].copy_from_slice(&namespace.to_be_bytes());
        k[4..].copy_from_slice(id);
        ObjectKey(k)
    }

    /// The key as stored in redb.
    pub fn from_bytes(bytes: &[u8]) -> Option<ObjectKey> {
        Some(ObjectKey(bytes.try_into().ok()?))
    }

    /// The key's 36 bytes, as the tables keyed by object store it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The namespace number.
    pub fn namespace(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// The 32-byte object id.
    pub fn id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.0[4..]);
        id
    }

    /// The `kv` key of the object's storage key `key`.
    pub(crate) fn kv_key(&self, key: &str) -> Vec<u8> {
        self.kv_key_bytes(key.as_bytes())
    }

    pub(crate) fn kv_key_bytes(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(OBJECT_KEY_LEN + key.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(key);
        k
    }

    /// The first key after every key of this object, in any table keyed by
    /// object.
    pub(crate) fn end(&self) -> Vec<u8> {
        let mut k = self.0.to_vec();
        increment(&mut k);
        k
    }

    /// The `pages` key of page `page` of the object's SQL database.
    pub(crate) fn page_key(&self, page: u32) -> [u8; OBJECT_KEY_LEN + 4] {
        let mut k = [0u8; OBJECT_KEY_LEN + 4];
        k[..OBJECT_KEY_LEN].copy_from_slice(&self.0);
        k[OBJECT_KEY_LEN..].copy_from_slice(&page.to_be_bytes());
        k
    }
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.namespace(), hex::encode(self.id()))
    }
}

/// A key of the `alarm_times` index: the time, ordered bytewise like the
/// number (its sign bit flipped), then the object.
pub(crate) fn alarm_time_key(time: i64, object: &ObjectKey) -> [u8; 8 + OBJECT_KEY_LEN] {
    let mut k = [0u8; 8 + OBJECT_KEY_LEN];
    k[..8].copy_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(object.as_bytes());
    k
}

/// Reads what [`alarm_time_key`] wrote.
pub(crate) fn decode_alarm_time_key(k: &[u8]) -> Option<(i64, ObjectKey)> {
    let time = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some((time as i64, ObjectKey::from_bytes(k.get(8..)?)?))
}

/// The bounds of namespace `number`'s rows in every table keyed by object.
pub(crate) fn namespace_range(number: u32) -> (Vec<u8>, Vec<u8>) {
    let lo = number.to_be_bytes().to_vec();
    let mut hi = lo.clone();
    increment(&mut hi);
    (lo, hi)
}

/// The bounds of namespace `number`'s objects after `after` (all of them
/// when `after` is `None` or of another namespace).
pub(crate) fn namespace_after(number: u32, after: Option<&ObjectKey>) -> (Vec<u8>, Vec<u8>) {
    let (lo, hi) = namespace_range(number);
    match after {
        Some(after) if after.namespace() == number => (after.end(), hi),
        _ => (lo, hi),
    }
}

/// Turns `bytes` into the smallest byte string greater than every string it
/// prefixes. An all-0xFF input becomes empty (meaning: no upper bound).
pub(crate) fn increment(bytes: &mut Vec<u8>) {
    while let Some(last) = bytes.pop() {
        if last != 0xFF {
            bytes.push(last + 1);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: u32, first: u8) -> ObjectKey {
        let mut id = [0u8; 32];
        id[0] = first;
        ObjectKey::new(namespace, &id)
    }

    #[test]
    fn an_object_key_round_trips() {
        let k = key(7, 0xAB);
        assert_eq!(k.namespace(), 7);
        assert_eq!(k.id()[0], 0xAB);
        assert_eq!(ObjectKey::from_bytes(k.as_bytes()), Some(k));
        assert_eq!(ObjectKey::from_bytes(&[0; 35]), None);
    }

    #[test]
    fn kv_keys_sort_by_object_then_by_storage_key_in_utf8_order() {
        let a = key(1, 0);
        let b = key(1, 1);
        let keys = ["", "a", "a\0", "ab", "b", "é", "\u{10FFFF}"];
        for pair in keys.windows(2) {
            assert!(a.kv_key(pair[0]) < a.kv_key(pair[1]), "{pair:?}");
        }
        // Every key of an object lies before its end, and the end before
        // the next object's first key.
        for k in keys {
            assert!(a.kv_key(k) < a.end());
        }
        assert!(a.end() <= b.kv_key(""));
        // Namespaces are contiguous ranges too.
        let (lo, hi) = namespace_range(1);
        assert!(lo.as_slice() <= a.as_bytes() && b.end() <= hi);
        assert!(key(2, 0).as_bytes() >= hi.as_slice());
    }

    #[test]
    fn page_keys_sort_by_page_number() {
        let a = key(0, 3);
        for pair in [0u32, 1, 255, 256, 65_536, u32::MAX].windows(2) {
            assert!(a.page_key(pair[0]) < a.page_key(pair[1]), "{pair:?}");
        }
        assert!(a.page_key(u32::MAX).as_slice() < a.end().as_slice());
    }

    #[test]
    fn alarm_time_keys_sort_by_time_then_object_and_decode() {
        let (x, y) = (key(0, 1), key(0, 2));
        let times = [i64::MIN, -1_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(
                alarm_time_key(pair[0], &y) < alarm_time_key(pair[1], &x),
                "{pair:?}"
            );
        }
        assert!(alarm_time_key(5, &x) < alarm_time_key(5, &y));
        for t in times {
            assert_eq!(decode_alarm_time_key(&alarm_time_key(t, &y)), Some((t, y)));
        }
        assert_eq!(decode_alarm_time_key(&[0; 10]), None);
    }

    #[test]
    fn increment_gives_the_first_string_after_a_prefix() {
        let mut v = b"ab".to_vec();
        increment(&mut v);
        assert_eq!(v, b"ac");
        let mut v = vec![1, 0xFF, 0xFF];
        increment(&mut v);
        assert_eq!(v, [2]);
        let mut v = vec![0xFF];
        increment(&mut v);
        assert!(v.is_empty());
    }
}

//! The few MessagePack encoders the envelope needs, each writing the shortest form (as the
//! official writers do, so our bytes match theirs).

use bytes::BufMut;

/// Appends an array header for `len` elements.
pub(crate) fn write_array_len(dst: &mut impl BufMut, len: usize) {
    if let Ok(small @ 0..=15) = u8::try_from(len) {
        dst.put_u8(0x90 | small);
    } else if let Ok(len) = u16::try_from(len) {
        dst.put_u8(0xdc);
        dst.put_u16(len);
    } else {
        dst.put_u8(0xdd);
        dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
}

/// Appends a map header for `len` entries.
pub(crate) fn write_map_len(dst: &mut impl BufMut, len: usize) {
    if let Ok(small @ 0..=15) = u8::try_from(len) {
        dst.put_u8(0x80 | small);
    } else if let Ok(len) = u16::try_from(len) {
        dst.put_u8(0xde);
        dst.put_u16(len);
    } else {
        dst.put_u8(0xdf);
        dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
}

/// Appends a non-negative integer.
pub(crate) fn write_uint(dst: &mut impl BufMut, v: u64) {
    if let Ok(small @ 0..=0x7f) = u8::try_from(v) {
        dst.put_u8(small);
    } else if let Ok(v) = u8::try_from(v) {
        dst.put_u8(0xcc);
        dst.put_u8(v);
    } else if let Ok(v) = u16::try_from(v) {
        dst.put_u8(0xcd);
        dst.put_u16(v);
    } else if let Ok(v) = u32::try_from(v) {
        dst.put_u8(0xce);
        dst.put_u32(v);
    } else {
        dst.put_u8(0xcf);
        dst.put_u64(v);
    }
}

/// Appends a string. Strings longer than 4 GiB cannot be written; the caller's size limits
/// keep them far below that.
pub(crate) fn write_str(dst: &mut impl BufMut, s: &str) {
    let len = s.len();
    if let Ok(small @ 0..=31) = u8::try_from(len) {
        dst.put_u8(0xa0 | small);
    } else if let Ok(len) = u8::try_from(len) {
        dst.put_u8(0xd9);
        dst.put_u8(len);
    } else if let Ok(len) = u16::try_from(len) {
        dst.put_u8(0xda);
        dst.put_u16(len);
    } else {
        dst.put_u8(0xdb);
        dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    dst.put_slice(s.as_bytes());
}

/// Appends `nil`.
pub(crate) fn write_nil(dst: &mut impl BufMut) {
    dst.put_u8(0xc0);
}

/// Appends a boolean.
pub(crate) fn write_bool(dst: &mut impl BufMut, v: bool) {
    dst.put_u8(if v { 0xc3 } else { 0xc2 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_forms() {
        let mut v = Vec::new();
        write_uint(&mut v, 36);
        write_uint(&mut v, 1234);
        write_uint(&mut v, 200);
        write_str(&mut v, &"x".repeat(121)[..0]);
        assert_eq!(v, [0x24, 0xcd, 0x04, 0xd2, 0xcc, 200, 0xa0]);
        let mut v = Vec::new();
        write_str(&mut v, &"x".repeat(121));
        assert_eq!(&v[..2], &[0xd9, 121]);
        let mut v = Vec::new();
        write_array_len(&mut v, 16);
        write_map_len(&mut v, 3);
        assert_eq!(v, [0xdc, 0, 16, 0x83]);
    }
}

//! The protobuf wire format, as much of it as Perfetto's trace needs: varints, tagged
//! varint/fixed64/length-delimited fields, and nested messages written into one buffer
//! (length prefixes patched in place, so nesting allocates nothing).

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// A message being written. Nested messages are opened with [`Msg::begin`] and closed with
/// [`Msg::end`], which writes their exact length (moving the content down when the length
/// takes fewer than the 4 bytes reserved).
#[derive(Debug, Default)]
pub struct Msg {
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.open.clear();
    }

    fn tag(&mut self, field: u32, wire: u32) {
        put_varint(&mut self.buf, u64::from(field << 3 | wire));
    }

    pub fn uint(&mut self, field: u32, v: u64) {
        self.tag(field, VARINT);
        put_varint(&mut self.buf, v);
    }

    pub fn int(&mut self, field: u32, v: i64) {
        // int32/int64 (not sint): two's complement as a 64-bit varint.
        self.uint(field, v as u64);
    }

    pub fn double(&mut self, field: u32, v: f64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        put_varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// Opens a nested message in `field`.
    pub fn begin(&mut self, field: u32) {
        self.tag(field, LEN);
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0x80, 0x80, 0x80, 0x00]);
    }

    /// Closes the innermost nested message (at most 2^28 - 1 bytes).
    pub fn end(&mut self) {
        let Some(at) = self.open.pop() else { return };
        let body = at + 4;
        let len = self.buf.len() - body;
        let mut v = [0u8; 4];
        let mut n = 0;
        let mut x = len as u64;
        while x >= 0x80 {
            v[n] = (x as u8) | 0x80;
            x >>= 7;
            n += 1;
        }
        v[n] = x as u8;
        n += 1;
        self.buf[at..at + n].copy_from_slice(&v[..n]);
        if n < 4 {
            self.buf.copy_within(body.., at + n);
            self.buf.truncate(at + n + len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_nesting() {
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        let mut m = Msg::new();
        m.begin(1);
        m.uint(8, 1);
        m.end();
        // field 1 LEN, length 2, field 8 varint 1.
        assert_eq!(m.buf, [0x0a, 0x02, 0x40, 0x01]);
        let mut m = Msg::new();
        m.begin(1);
        m.bytes(2, &[7; 200]);
        m.begin(3);
        m.uint(1, 5);
        m.end();
        m.end();
        // outer length: 3 (tag+len 200) + 200 + 2 + 2 = 207 -> two-byte varint.
        assert_eq!(&m.buf[..3], &[0x0a, 207 & 0x7f | 0x80, 1]);
        assert_eq!(m.buf.len(), 3 + 207);
        assert_eq!(&m.buf[m.buf.len() - 4..], &[0x1a, 2, 0x08, 5]);
        let mut m = Msg::new();
        m.int(4, -1);
        assert_eq!(m.buf.len(), 1 + 10);
    }
}

//! Where a rich state's encoding (`wire.rs`) is written: one trait over
//! the buffers it goes to, so the same hand-written encoder fills a log
//! record, a frame being assembled, or a stack buffer whose bytes are only
//! hashed.

/// Where a rich state is written: a `Vec` (the log, snapshots, a delta's
/// kept encoding) or a frame being assembled.
pub trait Sink {
    /// Appends `b`.
    fn put_slice(&mut self, b: &[u8]);
    /// Appends one byte.
    fn put_byte(&mut self, b: u8);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn put_slice(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline(always)]
    fn put_byte(&mut self, b: u8) {
        self.push(b);
    }
}

/// A buffer of a length known first, filled from its start: bytes encoded
/// only to be hashed (a cell's head, on every merge) need no allocation.
pub struct Filling<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Filling<'a> {
    /// Fills `buf`, which must be exactly as long as what is written.
    pub fn new(buf: &'a mut [u8]) -> Filling<'a> {
        Filling { buf, at: 0 }
    }

    /// Whether exactly the whole buffer was written.
    pub fn is_full(&self) -> bool {
        self.at == self.buf.len()
    }

    /// The bytes written so far.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.at]
    }
}

impl Sink for Filling<'_> {
    #[inline(always)]
    fn put_slice(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    #[inline(always)]
    fn put_byte(&mut self, b: u8) {
        self.buf[self.at] = b;
        self.at += 1;
    }
}

impl Sink for bytes::BytesMut {
    #[inline(always)]
    fn put_slice(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline(always)]
    fn put_byte(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }
}

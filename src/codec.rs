//! A small binary codec for derived state (the ingest stage's snapshots):
//! little-endian integers, length-prefixed bytes. Decoding never panics:
//! a short or malformed input is a [`CodecError`].

/// A value could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("snapshot body: {0}")]
pub struct CodecError(pub String);

/// Appends values to a buffer.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i128(&mut self, v: i128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub(crate) fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Enc, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

/// Reads values back, in the order they were written.
pub struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, at: 0 }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.at == self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| CodecError(format!("ends early (need {n} bytes at {})", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError(format!("{b} is not a boolean"))),
        }
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn i128(&mut self) -> Result<i128, CodecError> {
        Ok(i128::from_le_bytes(self.array()?))
    }
    pub(crate) fn u128(&mut self) -> Result<u128, CodecError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A length, checked against what is left (each item takes at least
    /// `min_item` bytes), so that a corrupt length cannot make a decoder
    /// reserve memory it will never fill.
    pub fn len(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.at) as u64;
        if n.saturating_mul(min_item.max(1) as u64) > left {
            return Err(CodecError(format!("a length of {n} is past the end")));
        }
        Ok(n as usize)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.len(1)?;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| CodecError(e.to_string()))
    }
    pub(crate) fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Dec<'a>) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            b => Err(CodecError(format!("{b} is not an option tag"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_and_short_input_is_an_error() {
        let mut e = Enc::default();
        e.u8(7);
        e.i128(-5);
        e.str("zähler");
        e.opt(Some(9u64), |e, v| e.u64(v));
        e.opt(None::<u64>, |e, v| e.u64(v));
        e.f64(1.5);
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.i128().unwrap(), -5);
        assert_eq!(d.str().unwrap(), "zähler");
        assert_eq!(d.opt(|d| d.u64()).unwrap(), Some(9));
        assert_eq!(d.opt(|d| d.u64()).unwrap(), None);
        assert_eq!(d.f64().unwrap(), 1.5);
        assert!(d.is_done());
        for cut in 0..e.buf.len() {
            let mut d = Dec::new(&e.buf[..cut]);
            let all = (|| -> Result<(), CodecError> {
                d.u8()?;
                d.i128()?;
                d.str()?;
                d.opt(|d| d.u64())?;
                d.opt(|d| d.u64())?;
                d.f64()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
        let mut huge = Enc::default();
        huge.u64(u64::MAX);
        assert!(Dec::new(&huge.buf).bytes().is_err());
    }
}

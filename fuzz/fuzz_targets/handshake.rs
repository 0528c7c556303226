#![no_main]
//! Handshake request and response parsing: no panic; what follows the response's record
//! separator is left in the buffer exactly; a parsed message re-encodes to something that parses
//! to the same value.
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use signalr_protocol::{HandshakeRequest, HandshakeResponse};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(response)) = HandshakeResponse::decode(&mut buf, 1024) {
        let separator = data.iter().position(|&b| b == 0x1e).expect("a parsed response had a separator");
        assert_eq!(&buf[..], &data[separator + 1..]);
        let mut again = BytesMut::new();
        response.encode(&mut again);
        assert_eq!(HandshakeResponse::decode(&mut again, usize::MAX).expect("re-parses"), Some(response));
    }
    let mut buf = BytesMut::from(data);
    if let Ok(Some(request)) = HandshakeRequest::decode(&mut buf, 1024) {
        let mut again = BytesMut::new();
        request.encode(&mut again);
        assert_eq!(HandshakeRequest::decode(&mut again, usize::MAX).expect("re-parses"), Some(request));
    }
});

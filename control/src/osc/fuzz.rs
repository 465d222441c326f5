//! The decoder and dispatcher against malformed, oversize, deeply nested and non-finite
//! input (proptest): nothing panics, every packet is answered or counted, and the engine
//! still takes a valid parameter afterwards.

use std::path::Path;

use proptest::prelude::*;
use rosc::{OscBundle, OscMessage, OscTime};
use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::{EngineConfig, EngineHandle};

use super::*;

const PATCH: &str = r#"
[[node]]
id = "tone"
type = "osc"
[[node]]
id = "vol"
type = "gain"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "tone"
to = "vol"
[[connect]]
from = "vol"
to = "out"
"#;

struct Rig {
    server: OscServer,
    handle: EngineHandle,
    engine: stagebox_engine::Engine,
    patch: stagebox_patches::Patch,
    status: Status,
    reply: UdpSocket,
}

fn rig() -> Rig {
    let registry = crate::registry();
    let patch = stagebox_patches::Patch::parse(PATCH, Path::new("fuzz.toml"), &registry).unwrap();
    let (mut handle, engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
    handle.swap(patch.compile(&registry, 48000.0).unwrap()).unwrap();
    let settings = OscSettings::local(0);
    let server = OscServer::start(settings, Path::new("fuzz.toml")).unwrap();
    let reply = UdpSocket::bind("127.0.0.1:0").unwrap();
    reply.set_nonblocking(true).unwrap();
    Rig {
        server,
        handle,
        engine,
        patch,
        status: Status {
            sample_rate: 48000,
            block_size: 64,
            ..Default::default()
        },
        reply,
    }
}

impl Rig {
    fn feed(&mut self, bytes: &[u8]) {
        let from = Peer::Udp(self.reply.local_addr().unwrap());
        let _ = self.server.dispatch_bytes(from, bytes, &mut self.handle, &self.patch, &self.status);
        // The audio side keeps draining the event ring, as the callback would.
        let mut out = [0.0f32; 64];
        self.engine.process(&[], &mut out);
        self.handle.drain(|_| {});
        self.handle.collect();
        let mut buf = [0u8; 65536];
        while self.reply.recv_from(&mut buf).is_ok() {}
    }

    fn still_works(&mut self) {
        self.handle
            .set_param("vol", "gain_db", -6.0, AT_ONCE)
            .expect("the engine takes a valid parameter");
    }
}

fn arg() -> impl Strategy<Value = OscType> {
    prop_oneof![
        any::<i32>().prop_map(OscType::Int),
        any::<f32>().prop_map(OscType::Float),
        any::<f64>().prop_map(OscType::Double),
        any::<i64>().prop_map(OscType::Long),
        any::<bool>().prop_map(OscType::Bool),
        Just(OscType::Float(f32::NAN)),
        Just(OscType::Double(f64::INFINITY)),
        Just(OscType::Float(f32::NEG_INFINITY)),
        Just(OscType::Nil),
        Just(OscType::Inf),
        "[a-z/]{0,12}".prop_map(OscType::String),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(OscType::Blob),
    ]
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/stagebox/node/vol/gain_db".to_string()),
        Just("/stagebox/node/vol/gain_db/norm".to_string()),
        Just("/stagebox/node/tone/waveform".to_string()),
        Just("/stagebox/node/*/gain_db".to_string()),
        Just("/stagebox/node/{vol,tone}/*".to_string()),
        Just("/stagebox/node/[".to_string()),
        Just("/stagebox/status".to_string()),
        Just("/stagebox/sync".to_string()),
        Just("/stagebox/notify".to_string()),
        Just("/stagebox/patch/list".to_string()),
        Just("/stagebox/models/status".to_string()),
        "/stagebox/node/[a-z*?{},\\[\\]]{0,10}/[a-z_*]{0,10}",
        "/[ -~]{0,24}",
    ]
}

fn message() -> impl Strategy<Value = OscPacket> {
    (address(), proptest::collection::vec(arg(), 0..4)).prop_map(|(addr, args)| OscPacket::Message(OscMessage { addr, args }))
}

fn packet() -> impl Strategy<Value = OscPacket> {
    message().prop_recursive(12, 64, 4, |inner| {
        (any::<(u32, u32)>(), proptest::collection::vec(inner, 0..4)).prop_map(|(t, content)| {
            OscPacket::Bundle(OscBundle {
                timetag: OscTime::from(t),
                content,
            })
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut r = rig();
        r.feed(&bytes);
        r.still_works();
    }

    #[test]
    fn well_formed_but_hostile_packets_never_panic(p in packet()) {
        let mut r = rig();
        if let Ok(bytes) = rosc::encoder::encode(&p) {
            r.feed(&bytes);
            // The same packet damaged: truncated and with a byte flipped.
            let n = bytes.len();
            r.feed(&bytes[..n / 2]);
            let mut b = bytes.clone();
            if n > 0 {
                b[n / 3] ^= 0x5a;
            }
            r.feed(&b);
        }
        r.still_works();
    }
}

#[test]
fn oversize_and_deep_packets_are_refused_not_fatal() {
    let mut r = rig();
    r.feed(&vec![0u8; MAX_PACKET + 10]);
    let mut p = OscPacket::Message(OscMessage {
        addr: "/stagebox/status".into(),
        args: vec![],
    });
    for _ in 0..200 {
        p = OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![p],
        });
    }
    r.feed(&rosc::encoder::encode(&p).unwrap());
    assert!(r.server.counters.malformed.load(Ordering::Relaxed) >= 1);
    assert!(r.server.counters.errors.load(Ordering::Relaxed) >= 2);
    r.still_works();
}

#[test]
fn a_bundle_whose_element_size_is_wrong_is_counted_malformed() {
    let mut r = rig();
    let inner = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/stagebox/status".into(),
        args: vec![],
    }))
    .unwrap();
    for size in [0x7fff_ffffu32, 0xffff_ffff, 0, inner.len() as u32 + 4] {
        let mut b = b"#bundle\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(&inner);
        let before = r.server.counters.malformed.load(Ordering::Relaxed);
        r.feed(&b);
        assert_eq!(
            r.server.counters.malformed.load(Ordering::Relaxed),
            before + 1,
            "element size {size:#x} was not counted"
        );
    }
    r.still_works();
}

//! Real DNS queries over real UDP and TCP sockets on 127.0.0.1 against
//! `serve`. Every test stops the servers it starts.

use std::{net::SocketAddr, time::Duration};

use hickory_server::proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType as WireType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::*;

const LB_ADDRESS: &str = "127.0.10.5";
const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- harness

struct TestServer {
    udp: SocketAddr,
    tcp: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), DnsError>>>,
}

impl TestServer {
    async fn start(zones: &Zones) -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(udp, tcp, zones.clone(), shutdown.clone()));
        Self {
            udp: udp_addr,
            tcp: tcp_addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Cancels the server and checks that `serve` returns `Ok` promptly.
    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returns within 10 s of cancellation")
            .expect("serve does not panic");
        result.expect("serve returns Ok after cancellation");
    }

    async fn ask(&self, transport: Transport, name: &str, rtype: WireType) -> Message {
        match transport {
            Transport::Udp => query_udp(self.udp, name, rtype).await,
            Transport::Tcp => query_tcp(self.tcp, name, rtype).await,
        }
    }
}

impl Drop for TestServer {
    // A failing test still stops its server.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];

fn query_bytes(name: &str, rtype: WireType) -> (u16, Vec<u8>) {
    static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    (id, message.to_vec().unwrap())
}

async fn query_udp(server: SocketAddr, name: &str, rtype: WireType) -> Message {
    let (id, bytes) = query_bytes(name, rtype);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&bytes, server).await.unwrap();
    let mut buf = vec![0; 65535];
    let (len, _) = tokio::time::timeout(IO_TIMEOUT, socket.recv_from(&mut buf))
        .await
        .expect("a UDP answer within 5 s")
        .unwrap();
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.metadata.id, id);
    response
}

async fn query_tcp(server: SocketAddr, name: &str, rtype: WireType) -> Message {
    let (id, bytes) = query_bytes(name, rtype);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let len = u16::try_from(bytes.len()).unwrap();
        stream.write_all(&len.to_be_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .expect("a TCP answer within 5 s");
    let response = Message::from_vec(&buf).unwrap();
    assert_eq!(response.metadata.id, id);
    response
}

/// `name ttl TYPE data`, as `dig` prints it.
fn line(record: &Record) -> String {
    format!(
        "{} {} {} {}",
        record.name,
        record.ttl,
        record.record_type(),
        record.data
    )
}

fn answers(message: &Message) -> Vec<String> {
    message.answers.iter().map(line).collect()
}

fn authorities(message: &Message) -> Vec<String> {
    message.authorities.iter().map(line).collect()
}

fn record(name: &str, rtype: RecordType, ttl: u32, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.into(),
        rtype,
        ttl,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// Adds or replaces a record set of example.test.
fn put(zones: &Zones, rrset: RecordSet) {
    zones.upsert_record("example.test", rrset).unwrap();
}

/// The design's example: `www.example.test A` → the load balancer, TTL 60.
fn example_zones() -> Zones {
    let zones = Zones::new();
    zones.upsert_zone("example.test").unwrap();
    put(&zones, record("www", RecordType::A, 60, &[LB_ADDRESS]));
    zones
}

fn assert_authoritative(message: &Message, rcode: ResponseCode) {
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert_eq!(message.metadata.response_code, rcode, "{message:?}");
    assert!(message.metadata.authoritative, "AA is set: {message:?}");
}

/// The zone's synthetic SOA, as the authority section of a negative answer.
fn soa_line(zone: &str, serial: u32) -> String {
    format!(
        "{zone}. {NEGATIVE_TTL} SOA localhost. hostmaster.{zone}. {serial} 3600 600 86400 {NEGATIVE_TTL}"
    )
}

// ---------------------------------------------------------------- answers

#[tokio::test]
async fn a_record_is_answered_with_its_ttl_over_udp_and_tcp() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "www.example.test.", WireType::A)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert_eq!(
            answers(&response),
            [format!("www.example.test. 60 A {LB_ADDRESS}")],
            "{transport:?}"
        );
        // Names are case-insensitive.
        let response = server
            .ask(transport, "WWW.Example.TEST.", WireType::A)
            .await;
        assert_eq!(response.answers.len(), 1, "{transport:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn aaaa_record() {
    let zones = example_zones();
    put(
        &zones,
        record("www", RecordType::Aaaa, 120, &["::1", "2001:db8::10"]),
    );
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "www.example.test.", WireType::AAAA)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        let mut got = answers(&response);
        got.sort();
        assert_eq!(
            got,
            [
                "www.example.test. 120 AAAA 2001:db8::10",
                "www.example.test. 120 AAAA ::1",
            ],
            "{transport:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn cname_is_followed_inside_the_zone() {
    let zones = example_zones();
    put(&zones, record("app", RecordType::Cname, 300, &["www"]));
    put(
        &zones,
        record("docs", RecordType::Cname, 30, &["app.example.test."]),
    );
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        // Asking for A at an alias gets the whole chain and the address.
        let response = server
            .ask(transport, "docs.example.test.", WireType::A)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert_eq!(
            answers(&response),
            [
                "docs.example.test. 30 CNAME app.example.test.".to_owned(),
                "app.example.test. 300 CNAME www.example.test.".to_owned(),
                format!("www.example.test. 60 A {LB_ADDRESS}"),
            ],
            "{transport:?}"
        );
        // Asking for the CNAME itself gets just the CNAME.
        let response = server
            .ask(transport, "app.example.test.", WireType::CNAME)
            .await;
        assert_eq!(
            answers(&response),
            ["app.example.test. 300 CNAME www.example.test."],
            "{transport:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn txt_records_keep_their_text_including_long_text() {
    let zones = example_zones();
    let long = "k=".to_owned() + &"x".repeat(600);
    put(
        &zones,
        record("@", RecordType::Txt, 300, &["v=spf1 -all", &long]),
    );
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server.ask(transport, "example.test.", WireType::TXT).await;
        assert_authoritative(&response, ResponseCode::NoError);
        let mut texts: Vec<String> = response
            .answers
            .iter()
            .map(|r| {
                assert_eq!(r.ttl, 300);
                let RData::TXT(txt) = &r.data else {
                    panic!("not TXT: {r:?}")
                };
                assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                String::from_utf8(bytes).unwrap()
            })
            .collect();
        texts.sort();
        assert_eq!(
            texts,
            [long.clone(), "v=spf1 -all".to_owned()],
            "{transport:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn mx_record_with_absolute_and_relative_exchanges() {
    let zones = example_zones();
    put(
        &zones,
        record(
            "@",
            RecordType::Mx,
            3600,
            &["10 mail.example.test.", "20 backup-mail"],
        ),
    );
    put(&zones, record("mail", RecordType::A, 60, &["127.0.10.6"]));
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server.ask(transport, "example.test.", WireType::MX).await;
        assert_authoritative(&response, ResponseCode::NoError);
        let mut got = answers(&response);
        got.sort();
        assert_eq!(
            got,
            [
                "example.test. 3600 MX 10 mail.example.test.",
                "example.test. 3600 MX 20 backup-mail.example.test.",
            ],
            "{transport:?}"
        );
        // The exchange's address comes along in the additional section.
        assert!(
            response
                .additionals
                .iter()
                .map(line)
                .any(|l| l == "mail.example.test. 60 A 127.0.10.6"),
            "{:?}",
            response.additionals
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn srv_record() {
    let zones = example_zones();
    put(
        &zones,
        record(
            "_sip._tcp",
            RecordType::Srv,
            600,
            &["10 5 5060 sip.example.test."],
        ),
    );
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "_sip._tcp.example.test.", WireType::SRV)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert_eq!(
            answers(&response),
            ["_sip._tcp.example.test. 600 SRV 10 5 5060 sip.example.test."],
            "{transport:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn caa_and_apex_ns_records() {
    let zones = example_zones();
    put(
        &zones,
        record("@", RecordType::Caa, 3600, &["0 issue \"letsencrypt.org\""]),
    );
    let server = TestServer::start(&zones).await;
    let response = server
        .ask(Transport::Udp, "example.test.", WireType::CAA)
        .await;
    assert_authoritative(&response, ResponseCode::NoError);
    assert_eq!(response.answers.len(), 1);
    let RData::CAA(caa) = &response.answers[0].data else {
        panic!("not CAA: {response:?}")
    };
    assert_eq!(caa.tag.as_str(), "issue");
    let (issuer, _) = caa.value_as_issue().unwrap();
    assert_eq!(issuer.unwrap().to_ascii(), "letsencrypt.org");

    // Without an `@ NS` the zone names this server; with one, the zone's own.
    let response = server
        .ask(Transport::Udp, "example.test.", WireType::NS)
        .await;
    assert_eq!(
        answers(&response),
        [format!("example.test. {DEFAULT_NS_TTL} NS localhost.")]
    );
    put(
        &zones,
        record("@", RecordType::Ns, 600, &["ns1.example.test.", "ns2"]),
    );
    let response = server
        .ask(Transport::Tcp, "example.test.", WireType::NS)
        .await;
    let mut got = answers(&response);
    got.sort();
    assert_eq!(
        got,
        [
            "example.test. 600 NS ns1.example.test.",
            "example.test. 600 NS ns2.example.test.",
        ]
    );
    server.stop().await;
}

// ---------------------------------------------------------------- negative answers

#[tokio::test]
async fn missing_name_is_nxdomain_with_the_soa() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "nope.example.test.", WireType::A)
            .await;
        assert_authoritative(&response, ResponseCode::NXDomain);
        assert!(response.answers.is_empty());
        // Serial 2: the zone was created (1), then `www` was added.
        assert_eq!(
            authorities(&response),
            [soa_line("example.test", 2)],
            "{transport:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn existing_name_without_the_type_is_empty_noerror_with_the_soa() {
    let zones = example_zones();
    put(&zones, record("a.b", RecordType::A, 60, &["127.0.0.9"]));
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "www.example.test.", WireType::MX)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert!(response.answers.is_empty());
        assert_eq!(
            authorities(&response),
            [soa_line("example.test", 3)],
            "{transport:?}"
        );
        // A name with only names below it exists too (RFC 8020).
        let response = server.ask(transport, "b.example.test.", WireType::A).await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert!(response.answers.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn names_outside_every_zone_are_refused() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        for name in ["example.org.", "test.", "notexample.test.", "."] {
            let response = server.ask(transport, name, WireType::A).await;
            assert_eq!(
                response.metadata.response_code,
                ResponseCode::Refused,
                "{name} {transport:?}"
            );
            assert!(response.answers.is_empty());
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn two_zones_answer_independently() {
    let zones = example_zones();
    zones.upsert_zone("corp.internal.").unwrap();
    zones
        .upsert_record(
            "corp.internal",
            record("www", RecordType::A, 30, &["127.0.20.1"]),
        )
        .unwrap();
    let server = TestServer::start(&zones).await;
    for transport in BOTH {
        let response = server
            .ask(transport, "www.corp.internal.", WireType::A)
            .await;
        assert_authoritative(&response, ResponseCode::NoError);
        assert_eq!(answers(&response), ["www.corp.internal. 30 A 127.0.20.1"]);
        let response = server
            .ask(transport, "www.example.test.", WireType::A)
            .await;
        assert_eq!(
            answers(&response),
            [format!("www.example.test. 60 A {LB_ADDRESS}")]
        );
        // Each zone's negative answers carry its own SOA.
        let response = server.ask(transport, "x.corp.internal.", WireType::A).await;
        assert_authoritative(&response, ResponseCode::NXDomain);
        assert_eq!(authorities(&response), [soa_line("corp.internal", 2)]);
    }
    assert_eq!(zones.zone_names(), ["corp.internal", "example.test"]);
    server.stop().await;
}

// ---------------------------------------------------------------- changes

#[tokio::test]
async fn every_change_is_visible_to_the_next_query() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    let a = |message: &Message| answers(message);

    // Replace the value.
    put(&zones, record("www", RecordType::A, 60, &["127.0.10.7"]));
    let response = server
        .ask(Transport::Udp, "www.example.test.", WireType::A)
        .await;
    assert_eq!(a(&response), ["www.example.test. 60 A 127.0.10.7"]);

    // Change the TTL.
    put(&zones, record("www", RecordType::A, 5, &["127.0.10.7"]));
    let response = server
        .ask(Transport::Tcp, "www.example.test.", WireType::A)
        .await;
    assert_eq!(a(&response), ["www.example.test. 5 A 127.0.10.7"]);

    // Add a name.
    put(&zones, record("api", RecordType::A, 60, &["127.0.10.8"]));
    let response = server
        .ask(Transport::Udp, "api.example.test.", WireType::A)
        .await;
    assert_eq!(a(&response), ["api.example.test. 60 A 127.0.10.8"]);

    // Remove it: NXDOMAIN, and the SOA serial counts every change.
    assert!(
        zones
            .remove_record("example.test", "api", RecordType::A)
            .unwrap()
    );
    assert!(
        !zones
            .remove_record("example.test", "api", RecordType::A)
            .unwrap()
    );
    let response = server
        .ask(Transport::Udp, "api.example.test.", WireType::A)
        .await;
    assert_authoritative(&response, ResponseCode::NXDomain);
    assert_eq!(authorities(&response), [soa_line("example.test", 6)]);

    // A zone created while serving is served.
    zones.upsert_zone("late.test").unwrap();
    let response = server
        .ask(Transport::Tcp, "x.late.test.", WireType::A)
        .await;
    assert_authoritative(&response, ResponseCode::NXDomain);

    // Remove the zone: REFUSED.
    assert!(zones.remove_zone("example.test").unwrap());
    assert!(!zones.remove_zone("example.test").unwrap());
    let response = server
        .ask(Transport::Udp, "www.example.test.", WireType::A)
        .await;
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    server.stop().await;
}

#[tokio::test]
async fn upserting_what_is_there_changes_nothing() {
    let zones = example_zones();
    let before = zones.snapshot();
    zones.upsert_zone("example.test.").unwrap();
    put(&zones, record("www", RecordType::A, 60, &[LB_ADDRESS]));
    assert_eq!(zones.snapshot(), before, "same records, same serial");
    assert_eq!(
        zones.record("example.test", "WWW", RecordType::A).unwrap(),
        Some(record("www", RecordType::A, 60, &[LB_ADDRESS]))
    );
    assert_eq!(
        zones.record("example.test", "www", RecordType::Mx).unwrap(),
        None
    );
}

#[tokio::test]
async fn snapshot_round_trip_restores_identical_answers() {
    let zones = example_zones();
    zones.upsert_zone("corp.internal").unwrap();
    let edits = [
        (
            "example.test",
            record("app", RecordType::Cname, 300, &["www"]),
        ),
        (
            "example.test",
            record("@", RecordType::Mx, 3600, &["10 mail"]),
        ),
        (
            "example.test",
            record("mail", RecordType::A, 60, &["127.0.10.6"]),
        ),
        (
            "example.test",
            record("@", RecordType::Txt, 300, &["hello world"]),
        ),
        (
            "example.test",
            record("_sip._tcp", RecordType::Srv, 600, &["1 2 3 sip."]),
        ),
        (
            "example.test",
            record("@", RecordType::Caa, 60, &["0 issue \"ca.test\""]),
        ),
        (
            "corp.internal",
            record("db", RecordType::Aaaa, 10, &["::1"]),
        ),
    ];
    for (zone, rrset) in edits {
        zones.upsert_record(zone, rrset).unwrap();
    }
    let questions = [
        ("www.example.test.", WireType::A),
        ("app.example.test.", WireType::A),
        ("example.test.", WireType::MX),
        ("example.test.", WireType::TXT),
        ("example.test.", WireType::CAA),
        ("example.test.", WireType::SOA),
        ("_sip._tcp.example.test.", WireType::SRV),
        ("nope.example.test.", WireType::A),
        ("www.example.test.", WireType::AAAA),
        ("db.corp.internal.", WireType::AAAA),
        ("elsewhere.test.", WireType::A),
    ];

    let json = serde_json::to_string(&zones.snapshot()).unwrap();
    let restored = Zones::from_snapshot(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(restored.snapshot(), zones.snapshot());

    let original = TestServer::start(&zones).await;
    let copy = TestServer::start(&restored).await;
    for (name, rtype) in questions {
        let want = original.ask(Transport::Udp, name, rtype).await;
        let got = copy.ask(Transport::Udp, name, rtype).await;
        assert_eq!(
            got.metadata.response_code, want.metadata.response_code,
            "{name} {rtype}"
        );
        assert_eq!(got.metadata.authoritative, want.metadata.authoritative);
        assert_eq!(got.answers, want.answers, "{name} {rtype}");
        assert_eq!(got.authorities, want.authorities, "{name} {rtype}");
        assert_eq!(got.additionals, want.additionals, "{name} {rtype}");
    }
    original.stop().await;
    copy.stop().await;
}

#[test]
fn restore_is_all_or_nothing() {
    let zones = example_zones();
    let before = zones.snapshot();
    let mut bad = before.clone();
    bad.zones.push(ZoneSnapshot {
        name: "other.test".into(),
        serial: 1,
        records: vec![record("x", RecordType::A, 60, &["not-an-ip"])],
    });
    let err = zones.restore(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DNS record x.other.test A: invalid value \"not-an-ip\": expected an IPv4 address such as \"192.0.2.10\""
    );
    assert_eq!(zones.snapshot(), before);
}

// ---------------------------------------------------------------- errors

#[test]
fn invalid_values_are_rejected_with_clear_errors() {
    let zones = example_zones();
    let cases: &[(RecordType, &str, &str)] = &[
        (
            RecordType::A,
            "1.2.3",
            "DNS record bad.example.test A: invalid value \"1.2.3\": expected an IPv4 address such as \"192.0.2.10\"",
        ),
        (
            RecordType::A,
            "::1",
            "DNS record bad.example.test A: invalid value \"::1\": this is an IPv6 address; use an AAAA record",
        ),
        (
            RecordType::Aaaa,
            "1.2.3.4",
            "DNS record bad.example.test AAAA: invalid value \"1.2.3.4\": this is an IPv4 address; use an A record",
        ),
        (
            RecordType::Aaaa,
            "fe80::zz",
            "DNS record bad.example.test AAAA: invalid value \"fe80::zz\": expected an IPv6 address such as \"2001:db8::10\"",
        ),
        (
            RecordType::Mx,
            "mail.example.test.",
            "DNS record bad.example.test MX: invalid value \"mail.example.test.\": expected \"PREFERENCE EXCHANGE\" such as \"10 mail.example.test.\"",
        ),
        (
            RecordType::Mx,
            "high mail.example.test.",
            "DNS record bad.example.test MX: invalid value \"high mail.example.test.\": expected \"PREFERENCE EXCHANGE\" such as \"10 mail.example.test.\": preference \"high\" is not a number from 0 to 65535",
        ),
        (
            RecordType::Srv,
            "10 5 sip.example.test.",
            "DNS record bad.example.test SRV: invalid value \"10 5 sip.example.test.\": expected \"PRIORITY WEIGHT PORT TARGET\" such as \"10 5 5060 sip.example.test.\"",
        ),
        (
            RecordType::Srv,
            "10 5 70000 sip.example.test.",
            "DNS record bad.example.test SRV: invalid value \"10 5 70000 sip.example.test.\": expected \"PRIORITY WEIGHT PORT TARGET\" such as \"10 5 5060 sip.example.test.\": port \"70000\" is not a number from 0 to 65535",
        ),
        (
            RecordType::Cname,
            "two words",
            "DNS record bad.example.test CNAME: invalid value \"two words\": expected a domain name such as \"target.example.test.\" or \"www\": a name cannot contain spaces",
        ),
        (
            RecordType::Ns,
            "",
            "DNS record bad.example.test NS: invalid value \"\": expected a name server's domain name such as \"ns1.example.test.\": the name is empty",
        ),
        (
            RecordType::Caa,
            "issue letsencrypt.org",
            "DNS record bad.example.test CAA: invalid value \"issue letsencrypt.org\": expected \"FLAGS TAG \\\"VALUE\\\"\" such as '0 issue \"letsencrypt.org\"'",
        ),
    ];
    for (rtype, value, message) in cases {
        let err = zones
            .upsert_record("example.test", record("bad", *rtype, 60, &[value]))
            .unwrap_err();
        assert!(matches!(err, DnsError::InvalidValue { .. }), "{err:?}");
        assert_eq!(err.to_string(), *message);
    }

    // A CAA flag out of range is caught by hickory's parser; the message
    // still names the record and the expected form.
    let err = zones
        .upsert_record(
            "example.test",
            record("bad", RecordType::Caa, 60, &["300 issue \"ca.test\""]),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("DNS record bad.example.test CAA: invalid value \"300 issue \\\"ca.test\\\"\": expected \"FLAGS TAG"),
        "{err}"
    );

    // One bad value fails the whole set and changes nothing.
    let before = zones.snapshot();
    assert!(
        zones
            .upsert_record(
                "example.test",
                record("www", RecordType::A, 60, &["127.0.0.1", "x"])
            )
            .is_err()
    );
    assert_eq!(zones.snapshot(), before);
}

#[test]
fn invalid_record_sets_names_and_zones_are_rejected() {
    let zones = example_zones();
    let err =
        |zone: &str, rrset: RecordSet| zones.upsert_record(zone, rrset).unwrap_err().to_string();

    assert_eq!(
        err(
            "nope.test",
            record("www", RecordType::A, 60, &["127.0.0.1"])
        ),
        "DNS zone nope.test does not exist"
    );
    assert_eq!(
        err("example.test", record("www", RecordType::A, 60, &[])),
        "DNS record www.example.test A: no values; a record set needs at least one"
    );
    assert_eq!(
        err(
            "example.test",
            record("www", RecordType::A, u32::MAX, &["127.0.0.1"])
        ),
        "DNS record www.example.test A: TTL 4294967295 is larger than the maximum 2147483647"
    );
    assert_eq!(
        err(
            "example.test",
            record("", RecordType::A, 60, &["127.0.0.1"])
        ),
        "invalid DNS record name \"\" in zone example.test: the name is empty; use \"@\" for the zone apex"
    );
    assert_eq!(
        err(
            "example.test",
            record("www.example.org.", RecordType::A, 60, &["127.0.0.1"])
        ),
        "invalid DNS record name \"www.example.org.\" in zone example.test: www.example.org is outside the zone; write it relative to the zone (\"www\") or as a name ending in .example.test."
    );
    assert!(
        err(
            "example.test",
            record("a..b", RecordType::A, 60, &["127.0.0.1"])
        )
        .starts_with("invalid DNS record name \"a..b\" in zone example.test: "),
    );

    // CNAME rules.
    assert_eq!(
        err(
            "example.test",
            record("www", RecordType::Cname, 60, &["other"])
        ),
        "DNS record www.example.test CNAME: www.example.test already has a A record, and a CNAME must be the only record at its name"
    );
    put(&zones, record("alias", RecordType::Cname, 60, &["www"]));
    assert_eq!(
        err(
            "example.test",
            record("alias", RecordType::Txt, 60, &["hi"])
        ),
        "DNS record alias.example.test TXT: alias.example.test already has a CNAME record, and a CNAME must be the only record at its name"
    );
    assert_eq!(
        err(
            "example.test",
            record("two", RecordType::Cname, 60, &["a", "b"])
        ),
        "DNS record two.example.test CNAME: a CNAME has exactly one value, got 2"
    );
    assert_eq!(
        err("example.test", record("@", RecordType::Cname, 60, &["www"])),
        "DNS record example.test CNAME: a CNAME cannot be at the zone apex (\"@\"), which holds the zone's SOA and NS records"
    );

    // Zone names.
    assert_eq!(
        zones.upsert_zone("").unwrap_err().to_string(),
        "invalid DNS zone name \"\": the name is empty"
    );
    assert_eq!(
        zones.upsert_zone(".").unwrap_err().to_string(),
        "invalid DNS zone name \".\": the root zone cannot be served"
    );
    assert!(
        zones
            .upsert_zone("bad zone.test")
            .unwrap_err()
            .to_string()
            .starts_with("invalid DNS zone name \"bad zone.test\": ")
    );
    assert_eq!(
        zones
            .remove_record("nope.test", "www", RecordType::A)
            .unwrap_err()
            .to_string(),
        "DNS zone nope.test does not exist"
    );
}

#[test]
fn record_types_and_fqdns() {
    assert_eq!("aaaa".parse::<RecordType>().unwrap(), RecordType::Aaaa);
    assert_eq!(" MX ".parse::<RecordType>().unwrap(), RecordType::Mx);
    assert_eq!(
        "PTR".parse::<RecordType>().unwrap_err().to_string(),
        "unsupported DNS record type \"PTR\": expected one of A, AAAA, CNAME, TXT, MX, NS, SRV, CAA"
    );
    for rtype in RecordType::ALL {
        assert_eq!(rtype.to_string().parse::<RecordType>().unwrap(), rtype);
        let json = serde_json::to_string(&rtype).unwrap();
        assert_eq!(json, format!("\"{rtype}\""));
        assert_eq!(serde_json::from_str::<RecordType>(&json).unwrap(), rtype);
    }
    assert_eq!(
        record_fqdn("example.test", "www").unwrap(),
        "www.example.test"
    );
    assert_eq!(record_fqdn("Example.Test.", "@").unwrap(), "example.test");
    assert_eq!(
        record_fqdn("example.test", "www.example.test.").unwrap(),
        "www.example.test"
    );
    assert_eq!(
        record_fqdn("example.test", "_sip._tcp").unwrap(),
        "_sip._tcp.example.test"
    );
    // Route 53's rule: a name already ending in the zone is not doubled.
    assert_eq!(
        record_fqdn("example.test", "www.example.test").unwrap(),
        "www.example.test"
    );
    assert_eq!(
        record_fqdn("example.test", "Example.Test").unwrap(),
        "example.test"
    );
    assert_eq!(
        record_fqdn("example.test", "www.other.test").unwrap(),
        "www.other.test.example.test"
    );
}

#[tokio::test]
async fn names_ending_in_the_zone_and_wildcards() {
    let zones = example_zones();
    // Both mean `www.example.test`: the record set is replaced, not doubled.
    put(
        &zones,
        record("www.example.test", RecordType::A, 60, &["127.0.10.9"]),
    );
    assert_eq!(zones.records("example.test").unwrap().len(), 1);
    put(
        &zones,
        record("alias", RecordType::Cname, 60, &["www.example.test"]),
    );
    put(&zones, record("*.apps", RecordType::A, 60, &[LB_ADDRESS]));
    let server = TestServer::start(&zones).await;
    let response = server
        .ask(Transport::Udp, "alias.example.test.", WireType::A)
        .await;
    assert_eq!(
        answers(&response),
        [
            "alias.example.test. 60 CNAME www.example.test.",
            "www.example.test. 60 A 127.0.10.9",
        ]
    );
    let response = server
        .ask(Transport::Tcp, "anything.apps.example.test.", WireType::A)
        .await;
    assert_authoritative(&response, ResponseCode::NoError);
    assert_eq!(
        answers(&response),
        [format!("anything.apps.example.test. 60 A {LB_ADDRESS}")]
    );
    server.stop().await;
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn shutdown_stops_the_listeners_and_frees_the_ports() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    // An idle TCP client must not hold shutdown up.
    let _idle = TcpStream::connect(server.tcp).await.unwrap();
    let response = server
        .ask(Transport::Udp, "www.example.test.", WireType::A)
        .await;
    assert_eq!(response.answers.len(), 1);
    let (udp, tcp) = (server.udp, server.tcp);
    // Bounded, so that a shutdown held up by the idle client fails the
    // test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the idle client holds the shutdown up");

    // The sockets are closed: both ports can be bound again.
    let _udp = UdpSocket::bind(udp).await.expect("UDP port released");
    let _tcp = TcpListener::bind(tcp).await.expect("TCP port released");
}

#[tokio::test]
async fn dig_gets_the_address() {
    let zones = example_zones();
    let server = TestServer::start(&zones).await;
    let output = tokio::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &server.udp.port().to_string()])
        .args(["www.example.test", "A", "+short", "+time=2", "+tries=1"])
        .output()
        .await;
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("note: `dig` is not installed (package dnsutils); skipping");
        }
        Err(e) => panic!("running dig: {e}"),
        Ok(output) => {
            assert!(output.status.success(), "{output:?}");
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), LB_ADDRESS);
        }
    }
    server.stop().await;
}

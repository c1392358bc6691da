//! The portable resource types of the design's table. Both `local` and `aws`
//! implement every one of them, with the same computed attributes where they
//! mean the same thing.

use super::definition::{Attr, Prop, PropType as T, ResourceSchema, attr, prop, secret_attr};

const ID: Attr = attr("id", "the target's identifier");
const NAME: Prop = prop("name", T::String)
    .chosen()
    .doc("display name; derived from the deployment when omitted");
const TAGS: Prop = prop("tags", T::Map(&T::String))
    .doc("extra tags, merged with the resource's and the environment's");

const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp", "all"];
const RULE: &[Prop] = &[
    prop("protocol", T::Enum(PROTOCOLS)).default("\"tcp\""),
    prop("port", T::Int).doc("a single port"),
    prop("ports", T::String).doc("a range such as `8000-8100`"),
    prop("from", T::String).doc("a CIDR block or another firewall's id (ingress)"),
    prop("to", T::String).doc("a CIDR block or another firewall's id (egress)"),
    prop("description", T::String),
];

const LISTEN: &[Prop] = &[
    prop("protocol", T::Enum(&["http", "tcp"])).default("\"http\""),
    prop("port", T::Int).required(),
];

const HEALTH_CHECK: &[Prop] = &[
    prop("path", T::String)
        .default("\"/\"")
        .doc("HTTP path (http listeners)"),
    prop("port", T::Int).doc("defaults to the backend port"),
    prop("interval", T::Duration).default("\"5s\""),
    prop("timeout", T::Duration).default("\"2s\""),
    prop("healthy", T::Int)
        .default("2")
        .doc("consecutive passes before a backend is put in"),
    prop("unhealthy", T::Int)
        .default("2")
        .doc("consecutive failures before a backend is taken out"),
];

const BACKEND: &[Prop] = &[
    prop("address", T::String).required(),
    prop("weight", T::Int).default("1"),
    prop("port", T::Int),
];

const CLOUD_CONFIG_NOTE: &str = "shell script, or cloud-config with write_files and runcmd";

pub const PORTABLE: &[ResourceSchema] = &[
    ResourceSchema {
        kind: "network",
        description: "an address block; on aws a VPC",
        properties: &[
            NAME,
            prop("cidr", T::Cidr).required().force_new(),
            prop("internet", T::Bool)
                .default("false")
                .doc("internet gateway and public route table (aws)"),
            TAGS,
        ],
        attributes: &[ID],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "subnet",
        description: "an address block inside a network",
        properties: &[
            NAME,
            prop("network", T::Ref).required().force_new(),
            prop("cidr", T::Cidr).required().force_new(),
            prop("zone", T::String)
                .force_new()
                .chosen()
                .doc("availability zone (aws)"),
            prop("public", T::Bool).default("false"),
            TAGS,
        ],
        attributes: &[ID],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "firewall",
        description: "ingress and egress rules; on aws a security group",
        properties: &[
            NAME,
            prop("network", T::Ref).required().force_new(),
            prop("description", T::String).force_new().chosen(),
            prop("ingress", T::List(&T::Object(RULE))).default("[]"),
            prop("egress", T::List(&T::Object(RULE)))
                .default("[{\"protocol\": \"all\", \"to\": \"0.0.0.0/0\"}]"),
            TAGS,
        ],
        attributes: &[ID],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "server",
        description: "a server; locally a supervised sandbox on its own loopback address, on aws an EC2 instance",
        properties: &[
            NAME,
            prop("image", T::String)
                .required()
                .force_new()
                .doc("image name (debian-12) or an image resource's id"),
            prop(
                "size",
                T::Enum(&["nano", "micro", "small", "medium", "large", "xlarge"]),
            )
            .default("\"small\"")
            .force_new(),
            prop("subnet", T::Ref).required().force_new(),
            prop("firewalls", T::List(&T::Ref)).default("[]").chosen(),
            prop("key_pair", T::Ref).force_new(),
            prop("user_data", T::String)
                .force_new()
                .doc(CLOUD_CONFIG_NOTE),
            prop("address", T::String)
                .force_new()
                .doc("a fixed private address instead of the next free one"),
            prop("volumes", T::List(&T::Ref)).default("[]"),
            TAGS,
        ],
        attributes: &[
            ID,
            attr(
                "address",
                "the address its neighbours reach it at (on aws the private one)",
            ),
            attr("private_ip", "the address inside its subnet"),
            attr("public_ip", "the public address, when one is attached"),
        ],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "ip_address",
        description: "a stable address; on aws an Elastic IP",
        properties: &[
            NAME,
            prop("server", T::Ref).doc("the server to associate it with"),
            TAGS,
        ],
        attributes: &[ID, attr("address", "the address")],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "load_balancer",
        description: "an HTTP or TCP load balancer with health checks; on aws an ALB or NLB",
        properties: &[
            NAME,
            prop("listen", T::Object(LISTEN)).required().force_new(),
            prop(
                "algorithm",
                T::Enum(&["weighted_round_robin", "round_robin", "least_connections"]),
            )
            .default("\"weighted_round_robin\""),
            prop("health_check", T::Object(HEALTH_CHECK)).default("{}"),
            prop(
                "backends",
                T::List(&T::Either(&T::String, &T::Object(BACKEND))),
            )
            .default("[]"),
            prop("backend_port", T::Int).required(),
            prop("subnets", T::List(&T::Ref))
                .default("[]")
                .force_new()
                .chosen(),
            prop("firewalls", T::List(&T::Ref)).default("[]").chosen(),
            prop("drain_timeout", T::Duration).default("\"10s\""),
            prop("internal", T::Bool).default("false").force_new(),
            TAGS,
        ],
        attributes: &[
            ID,
            attr("address", "the address it listens on"),
            attr(
                "port",
                "the port it listens on (a low port maps to a free high one locally when not root)",
            ),
            attr("dns_name", "its DNS name"),
        ],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "dns_zone",
        description: "an authoritative DNS zone; on aws a Route 53 hosted zone",
        properties: &[
            prop("name", T::String).required().force_new(),
            prop("private", T::Bool).default("false").force_new(),
            TAGS,
        ],
        attributes: &[ID, attr("name_servers", "the zone's name servers")],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "dns_record",
        description: "a record set in a DNS zone",
        properties: &[
            prop("zone", T::Ref).required().force_new(),
            prop("name", T::String)
                .required()
                .force_new()
                .doc("relative to the zone; `@` for the apex"),
            prop(
                "type",
                T::Enum(&["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV", "CAA"]),
            )
            .required()
            .force_new(),
            prop("ttl", T::Int).default("300"),
            prop("values", T::List(&T::String)).required(),
        ],
        attributes: &[ID, attr("fqdn", "the record's fully qualified name")],
        data_holding: false,
        taggable: false,
    },
    ResourceSchema {
        kind: "database",
        description: "a managed database; locally a PostgreSQL cluster, on aws RDS",
        properties: &[
            NAME,
            prop("engine", T::Enum(&["postgres"]))
                .required()
                .force_new(),
            prop("version", T::String).force_new().chosen(),
            prop("size", T::Enum(&["micro", "small", "medium", "large"])).default("\"small\""),
            prop("storage_gb", T::Int).default("10"),
            prop("database", T::String)
                .default("\"app\"")
                .force_new()
                .doc("the database created for the owner"),
            prop("owner", T::String).default("\"app\"").force_new(),
            prop("owner_password", T::String).required().sensitive(),
            prop("subnets", T::List(&T::Ref))
                .default("[]")
                .force_new()
                .chosen(),
            prop("firewalls", T::List(&T::Ref)).default("[]").chosen(),
            TAGS,
        ],
        attributes: &[
            ID,
            attr("endpoint", "host:port to connect to"),
            attr("address", "the host"),
            attr("port", "the port"),
        ],
        data_holding: true,
        taggable: true,
    },
    ResourceSchema {
        kind: "bucket",
        description: "an object store; locally directory-backed, on aws S3",
        properties: &[
            NAME,
            prop("versioning", T::Bool).default("false"),
            prop("public", T::Bool).default("false"),
            TAGS,
        ],
        attributes: &[ID, attr("url", "where objects are served")],
        data_holding: true,
        taggable: true,
    },
    ResourceSchema {
        kind: "secret",
        description: "a secret value; locally encrypted in the local cloud's store, on aws Secrets Manager",
        properties: &[
            NAME,
            prop("value", T::String).required().sensitive(),
            prop("description", T::String),
            TAGS,
        ],
        attributes: &[ID, attr("version", "the current version's id")],
        data_holding: true,
        taggable: true,
    },
    ResourceSchema {
        kind: "key_pair",
        description: "an ed25519 key pair; the private key is a secret output",
        properties: &[
            prop("name", T::String).required().force_new(),
            prop("public_key", T::String)
                .force_new()
                .doc("an OpenSSH public key to import instead of generating one"),
            TAGS,
        ],
        attributes: &[
            ID,
            attr("public_key", "the OpenSSH public key"),
            attr("fingerprint", "SHA256 fingerprint"),
            secret_attr(
                "private_key",
                "the OpenSSH private key (only for generated keys)",
            ),
        ],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "volume",
        description: "a block volume; locally a directory, on aws EBS",
        properties: &[
            NAME,
            prop("size_gb", T::Int).required(),
            prop("snapshot", T::Ref)
                .force_new()
                .doc("start from this snapshot"),
            prop("zone", T::String).force_new().chosen(),
            TAGS,
        ],
        attributes: &[ID, attr("path", "where it is mounted (local)")],
        data_holding: true,
        taggable: true,
    },
    ResourceSchema {
        kind: "snapshot",
        description: "a point-in-time copy of a volume",
        properties: &[NAME, prop("volume", T::Ref).required().force_new(), TAGS],
        attributes: &[ID, attr("size_gb", "the copied volume's size")],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "image",
        description: "an image made from a server; locally a snapshot of its sandbox, on aws an AMI",
        properties: &[NAME, prop("server", T::Ref).required().force_new(), TAGS],
        attributes: &[ID],
        data_holding: false,
        taggable: true,
    },
];

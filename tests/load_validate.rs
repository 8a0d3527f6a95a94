//! Loading and validation as a user meets them: the corpus of invalid manifests in
//! `tests/data/bad` (each `<case>.yaml`, or `<case>/` directory, beside a `<case>.err`
//! holding the exact error text palisade must print), manifests the API server accepts
//! and palisade must accept too, and the bundled example directories.
//!
//! After a deliberate wording change, `PALISADE_BLESS=1 cargo test --test load_validate`
//! rewrites the `.err` files; review the diff before committing it.

use control::load::load_str;
use control::validate::{load_valid, validate};
use std::path::{Path, PathBuf};

const BAD: &str = "tests/data/bad";

fn bad_cases() -> Vec<(PathBuf, PathBuf)> {
    let mut cases: Vec<_> = std::fs::read_dir(BAD)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .map(|p| {
            let err = PathBuf::from(format!("{}.err", p.with_extension("").display()));
            (p, err)
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_manifest_gives_its_exact_error() {
    let bless = std::env::var_os("PALISADE_BLESS").is_some();
    let cases = bad_cases();
    assert_eq!(cases.len(), 24, "corpus size changed: update this count");
    let mut failures = Vec::new();
    for (manifest, expected_file) in cases {
        let got = match load_valid(&manifest) {
            Ok(_) => "(loaded without error)".to_string(),
            Err(e) => e.to_string(),
        };
        if bless {
            std::fs::write(&expected_file, format!("{got}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} is missing", expected_file.display()));
        if got != expected.trim_end_matches('\n') {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- got\n{got}\n",
                manifest.display(),
                expected.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn accepts(text: &str) -> Result<(), String> {
    let cluster = load_str(text, Path::new("ok.yaml")).map_err(|e| e.to_string())?;
    validate(&cluster).map_err(|e| e.to_string())
}

/// Edge cases just inside what the API server allows.
#[test]
fn valid_edge_cases_are_accepted() {
    let policy = |spec: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p.v1, namespace: dev}}\nspec:\n{spec}"
        )
    };
    let cases: &[(&str, String)] = &[
        ("non-canonical cidr, except inside its network", policy(
            "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 192.168.7.99/24, except: [192.168.7.0/25, 192.168.7.200/32]}\n",
        )),
        ("ipv6 block", policy("  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 'fd00::/48', except: ['fd00::/64']}\n")),
        ("port range edges", policy(
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 1}\n    - {port: 65535, endPort: 65535}\n    - {protocol: SCTP, port: 1, endPort: 65535}\n    - {protocol: UDP}\n",
        )),
        ("named port edges", policy(
            "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: a}\n    - {port: abcdefghijklm-1}\n    - {port: 9p}\n",
        )),
        ("selector forms", policy(
            "  podSelector:\n    matchLabels: {example.com/App_1.x: '', a: Z-9.z_0}\n    matchExpressions:\n    - {key: tier, operator: In, values: [web, '']}\n    - {key: tier, operator: NotIn, values: [db]}\n    - {key: k8s.io/x, operator: Exists}\n    - {key: y, operator: DoesNotExist, values: []}\n  policyTypes: [Egress, Ingress]\n  ingress: [{}]\n  egress: []\n",
        )),
        ("pod with dual-stack ips and named container ports", "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: dev, labels: {app: web}}\nspec:\n  containers:\n  - {name: web, image: nginx, ports: [{name: http, containerPort: 80}, {name: metrics, containerPort: 9090, protocol: TCP}]}\n  - {name: side, image: x, ports: [{name: http, containerPort: 8080}]}\nstatus:\n  podIP: 10.47.255.10\n  podIPs: [{ip: 10.47.255.10}, {ip: 'fd00::a'}]\n".to_string()),
        ("same name in different namespaces and kinds", "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: dev, namespace: dev}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: dev, namespace: qa}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: dev}\nspec: {podCIDR: 10.47.0.0/16}\n".to_string()),
    ];
    for (what, text) in cases {
        assert_eq!(accepts(text), Ok(()), "{what}");
    }
}

/// All errors are reported, not just the first, in load order.
#[test]
fn all_errors_are_reported_in_order() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\n\
                spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 0}, {protocol: ICMP}]\n    from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]\n";
    let cluster = load_str(text, Path::new("p.yaml")).unwrap();
    let errors = validate(&cluster).unwrap_err();
    let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.ingress[0].ports[0].port",
            "spec.ingress[0].ports[1].protocol",
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ]
    );
    assert!(errors.0.iter().all(|e| e.object == "NetworkPolicy dev/p"));
}

#[test]
fn bundled_examples_load_and_validate() {
    for (dir, namespaces, pods, policies) in [
        ("examples/policies", 3, 6, 2),
        ("examples/policies/lab", 3, 6, 1),
        ("examples/cn2", 3, 5, 1),
    ] {
        let cluster = load_valid(Path::new(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(
            (cluster.namespaces.len(), cluster.pods.len(), cluster.policies.len()),
            (namespaces, pods, policies),
            "{dir}"
        );
    }
}

/// Through the binary: a bad manifest directory fails with every error and exit 1,
/// and prints nothing on stdout.
#[test]
fn commands_refuse_invalid_manifests() {
    let expected = std::fs::read_to_string("tests/data/bad/endport.err").unwrap();
    for args in [
        &["rules", "--manifests", "tests/data/bad/endport.yaml"][..],
        &["matrix", "--manifests", "tests/data/bad/endport.yaml"][..],
        &["explain", "--manifests", "tests/data/bad/endport.yaml", "--from", "1.2.3.4", "--to", "1.2.3.5"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("palisade: error: loading tests/data/bad/endport.yaml: {expected}"),
            "{args:?}"
        );
    }
}

mod layout_props {
    //! However objects are spread over files, documents and `kind: List`s, loading
    //! returns them all, files in path order and documents in file order, each with
    //! its file and index.
    use control::load::load_dir;
    use proptest::prelude::*;
    use std::path::PathBuf;

    #[derive(Clone, Debug)]
    enum Layout {
        /// One YAML document per object, `---` separated (with a stray empty document).
        MultiDoc,
        /// One `kind: List` holding every object.
        List,
        /// JSON: only for files holding one object.
        Json,
    }

    /// A pod as block YAML, indented by `indent` spaces (for list items).
    fn pod_yaml(name: &str, label: u8, indent: usize) -> String {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: dev\n  labels:\n    app: a{label}\nstatus:\n  podIP: 10.0.0.{label}\n"
        );
        let pad = " ".repeat(indent);
        text.lines().map(|l| format!("{pad}{l}\n")).collect()
    }

    fn pod_json(name: &str, label: u8) -> String {
        format!(
            "{{\n  \"apiVersion\": \"v1\", \"kind\": \"Pod\",\n  \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"dev\", \"labels\": {{\"app\": \"a{label}\"}}}},\n  \"status\": {{\"podIP\": \"10.0.0.{label}\"}}\n}}\n"
        )
    }

    fn file_text(objects: &[(String, u8)], layout: &Layout) -> String {
        match layout {
            Layout::Json => pod_json(&objects[0].0, objects[0].1),
            Layout::List => {
                let items: String = objects
                    .iter()
                    .map(|(name, label)| {
                        let item = pod_yaml(name, *label, 2);
                        format!("- {}", &item[2..])
                    })
                    .collect();
                format!("apiVersion: v1\nkind: List\nitems:\n{items}")
            }
            // A leading `---` opens document 0; the trailing one an empty document.
            Layout::MultiDoc => {
                let docs: Vec<String> = objects.iter().map(|(name, label)| pod_yaml(name, *label, 0)).collect();
                format!("---\n{}---\n", docs.join("---\n"))
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn any_layout_loads_every_object_in_path_and_document_order(
            files in prop::collection::vec(
                (prop::sample::select(vec!["a", "b/c", "b/a", "z", "b/c/d"]), 1usize..4, 0u8..3),
                1..6,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut expected: Vec<(PathBuf, usize, String)> = Vec::new();
            let mut n = 0;
            for (i, (sub, count, layout)) in files.iter().enumerate() {
                let layout = match (layout, count) {
                    (0, _) => Layout::MultiDoc,
                    (1, _) => Layout::List,
                    (_, 1) => Layout::Json,
                    _ => Layout::List,
                };
                let ext = if matches!(layout, Layout::Json) { "json" } else { "yaml" };
                let path = dir.path().join(sub).join(format!("f{i}.{ext}"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let objects: Vec<(String, u8)> = (0..*count)
                    .map(|_| {
                        n += 1;
                        (format!("p{n}"), (n % 250) as u8 + 1)
                    })
                    .collect();
                std::fs::write(&path, file_text(&objects, &layout)).unwrap();
                for (k, (name, _)) in objects.iter().enumerate() {
                    expected.push((path.clone(), k, name.clone()));
                }
            }
            expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let cluster = load_dir(dir.path()).unwrap();
            let got: Vec<(PathBuf, usize, String)> = cluster
                .pods
                .iter()
                .map(|p| (p.source.file.clone(), p.source.doc, p.object.metadata.name.clone().unwrap()))
                .collect();
            prop_assert_eq!(got, expected);
            prop_assert!(control::validate::validate(&cluster).is_ok());
        }
    }
}

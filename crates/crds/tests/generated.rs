//! `deploy/crds.yaml` is what the generator makes from the types.
#[test]
fn deploy_crds_equal_the_generator() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds.yaml");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == seta_crds::yaml(),
        "{} differs from the generator: run `cargo run -p seta-crds > deploy/crds.yaml`",
        path.display()
    );
}

#[test]
fn schemas_are_structural_and_open_only_where_the_agent_validates() {
    for c in seta_crds::crds() {
        let s = serde_json::to_string(&c).unwrap();
        assert!(
            !s.contains("$ref") && !s.contains("\"$defs\"") && !s.contains("definitions"),
            "inline: {s}"
        );
        let schema = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(schema["type"], "object");
        let kind = c["spec"]["names"]["kind"].as_str().unwrap();
        if kind == "CiliumEndpoint" {
            let st = &schema["properties"]["status"]["properties"];
            assert_eq!(st["identity"]["properties"]["id"]["type"], "integer");
            assert!(st.get("named-ports").is_some());
        }
    }
}

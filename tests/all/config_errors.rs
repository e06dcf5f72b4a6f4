//! Bad configuration refuses to start with one clear error that names the
//! file, the field and the fix.

use std::path::Path;

use crate::support::{guests, serve_refused, write_config};

/// Runs `dohost serve` on `config_text` written into `dir`; it must fail.
/// Returns (the config path, stderr).
fn serve_fails(dir: &Path, config_text: &str) -> (String, String) {
    let config = write_config(dir, config_text);
    let stderr = serve_refused(&config, &dir.join("data"));
    (config.display().to_string(), stderr)
}

#[test]
fn each_bad_config_names_file_field_and_fix() {
    let counter = format!("{:?}", guests().counter);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {counter}\ncolor = 1\n"),
            vec!["unknown field `color`", "expected one of"],
        ),
        (
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = \"missing/thing\"\n".into(),
            vec!["durable_objects.bindings[0].component", "does not exist", "point it at"],
        ),
        (
            format!("[[durable_objects.bindings]]\nname = \"my-counter\"\nclass_name = \"Counter\"\ncomponent = {counter}\n"),
            vec!["durable_objects.bindings[0].name", "not a valid binding name", "e.g. \"COUNTER\""],
        ),
        (
            format!("[[durable_objects.bindings]]\nname = \"COUNTER\"\ncomponent = {counter}\n"),
            vec!["missing field `class_name`"],
        ),
        ("name = \"empty\"\n".into(), vec!["no Durable Object bindings", "[[durable_objects.bindings]]"]),
        ("this is not toml".into(), vec!["TOML parse error"]),
        (
            format!(
                "[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"Counter\"\ncomponent = {counter}\n[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"Counter\"\ncomponent = {counter}\n"
            ),
            vec!["durable_objects.bindings[1].name", "bound twice"],
        ),
        (
            format!("[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {counter}\n[limits]\nsql_database_bytes = 100\n"),
            vec!["limits.sql_database_bytes = 100", "too small", "at least 65536"],
        ),
        (
            format!("[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {counter}\n[storage]\nhistory = \"a week\"\n"),
            vec!["storage.history = \"a week\" is not a duration", "\"7d\""],
        ),
        (
            format!("[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {counter}\n[storage]\nhistory_max_bytes = 1000\n"),
            vec!["storage.history_max_bytes is set but storage.history is not"],
        ),
    ];
    for (text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (file, stderr) = serve_fails(dir.path(), &text);
        assert!(
            stderr.contains(&file),
            "error does not name the file {file}:\n{stderr}"
        );
        for needle in expected {
            assert!(stderr.contains(needle), "error lacks {needle:?}:\n{stderr}");
        }
    }
}

#[test]
fn a_component_of_the_wrong_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A valid component (the smallest: header only) that exports nothing.
    std::fs::write(
        dir.path().join("empty.wasm"),
        [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00],
    )
    .unwrap();
    let (_, stderr) = serve_fails(
        dir.path(),
        "[[durable_objects.bindings]]\nname = \"W\"\nclass_name = \"W\"\ncomponent = \"empty.wasm\"\n",
    );
    assert!(
        stderr.contains("binding W: the component does not export the handler interface"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    let (_, stderr) = serve_fails(
        dir.path(),
        "[[durable_objects.bindings]]\nname = \"J\"\nclass_name = \"J\"\ncomponent = \"junk.wasm\"\n",
    );
    assert!(
        stderr.contains("binding J: not a valid component"),
        "{stderr}"
    );
}

#[test]
fn a_component_importing_what_dohost_lacks_names_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = serve_fails(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"STRAY\"\nclass_name = \"Stray\"\ncomponent = {:?}\n",
            guests().stray
        ),
    );
    assert!(
        stderr.contains("binding STRAY: the component does not fit the durable-object world")
            && stderr.contains("test:stray/clock"),
        "{stderr}"
    );
}

#[test]
fn more_live_objects_than_the_kernels_mappings_allow_is_refused_at_start() {
    // Six mappings per instance slot: four billion objects need more than
    // any vm.max_map_count (an int) can allow.
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = serve_fails(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\ncomponent = {:?}\n[limits]\nmax_live_objects = 4000000000\n",
            guests().counter
        ),
    );
    for needle in [
        "max_live_objects = 4000000000",
        "vm.max_map_count = ",
        "sysctl -w vm.max_map_count=",
    ] {
        assert!(stderr.contains(needle), "error lacks {needle:?}:\n{stderr}");
    }
}

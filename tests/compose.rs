//! docker-compose.yml refers only to files that exist: its Dockerfile, and every
//! `/etc/disco/<file>` its services run (copied from docker/ by the Dockerfile).
//! CI also runs `docker-compose config -q` on it.

use std::path::Path;

#[test]
fn every_file_the_compose_file_refers_to_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(compose.contains("dockerfile: Dockerfile"));
    assert!(
        dockerfile.contains("COPY docker/ /etc/disco/"),
        "the Dockerfile installs docker/ as /etc/disco/"
    );

    let mut referenced = Vec::new();
    for text in [&compose, &dockerfile] {
        for (i, _) in text.match_indices("/etc/disco/") {
            let rest = &text[i + "/etc/disco/".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect();
            if !name.is_empty() {
                referenced.push(name);
            }
        }
    }
    // The scripts refer to the configs in turn.
    for script in std::fs::read_dir(root.join("docker")).unwrap() {
        let script = script.unwrap().path();
        if script.extension().is_some_and(|e| e == "sh") {
            let text = std::fs::read_to_string(&script).unwrap();
            for (i, _) in text.match_indices("/etc/disco/") {
                let name: String = text[i + 11..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect();
                referenced.push(name);
            }
        }
    }
    assert!(referenced.len() >= 8, "{referenced:?}");
    for name in referenced {
        assert!(
            root.join("docker").join(&name).is_file(),
            "docker-compose refers to /etc/disco/{name}, but docker/{name} does not exist"
        );
    }
}

//! Writes the ModelDeployment CRD to crds/modeldeployments.kubeinfer.io.yaml (or to stdout with `-`).

fn main() -> anyhow::Result<()> {
    let yaml = kubeinfer_operator::crdgen::crd_yaml()?;
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        Some(path) => std::fs::write(path, yaml)?,
        None => {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(kubeinfer_operator::crdgen::CRD_PATH);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

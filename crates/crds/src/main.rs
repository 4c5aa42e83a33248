//! Print `deploy/crds.yaml`.
fn main() {
    print!("{}", seta_crds::yaml());
}

//! Rebuilds the crate when a migration is added. `refinery::embed_migrations!`
//! includes the files it finds, so cargo notices a changed migration, but
//! not a new file in `src/storage/migrations`.

fn main() {
    println!("cargo:rerun-if-changed=src/storage/migrations");
}

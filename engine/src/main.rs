fn main() {
    println!("sagellm-engine placeholder");
}

fn main() {
    zhiban_cli::main()
}

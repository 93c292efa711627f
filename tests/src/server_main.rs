fn main() {
    zhiban_server::main()
}

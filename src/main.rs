fn main() -> std::process::ExitCode {
    crm::cli::main()
}

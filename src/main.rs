fn main() -> std::process::ExitCode {
    leakwatch::cli::main()
}

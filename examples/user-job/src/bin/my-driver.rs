fn main() -> std::process::ExitCode {
    user_job::link();
    discnn::driver_main()
}

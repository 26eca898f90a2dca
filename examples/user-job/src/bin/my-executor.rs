fn main() -> std::process::ExitCode {
    user_job::link();
    discnn::executor_main()
}

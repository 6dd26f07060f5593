import SigiloCoordinator

CoordinatorTool.main(Array(CommandLine.arguments.dropFirst()))

import SigiloEval

EvalTool.main(Array(CommandLine.arguments.dropFirst()))

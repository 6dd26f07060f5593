import SigiloTenant

TenantTool.main(Array(CommandLine.arguments.dropFirst()))

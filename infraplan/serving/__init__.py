"""What the engine and providers speak to model servers with: the SGLang HTTP client, SGLang server args, the smg (SGLang Model Gateway) client, and infraplan's SGLang API simulator."""

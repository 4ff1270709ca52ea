"""Pages of the sandbox payment providers (stand-ins for a PSP's hosted payment page and an
e-wallet's approval page): on this site for the demo and the tests, as the real ones would be on
the provider's. Only mounted when the sandbox gateways are configured."""

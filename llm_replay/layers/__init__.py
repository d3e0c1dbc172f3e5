"""Where requests are caught: HTTP interception (vcrpy's patchers), the network guard, LangChain."""

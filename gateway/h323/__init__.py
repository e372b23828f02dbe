"""H.323: Q.931 over TPKT, H.225.0 call signalling, H.245 and RAS, sans-IO cores with asyncio adapters."""

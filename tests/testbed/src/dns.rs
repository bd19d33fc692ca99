//! The test DNS server (hickory-server, in-memory zones).

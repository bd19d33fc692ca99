//! provider (skeleton; filled in by the core issue)

//! validation (skeleton; filled in by the core issue)

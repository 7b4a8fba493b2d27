//! Retention: which sets a policy keeps, each decision with a reason a human can check.

//! cron: pure logic, no PyO3 types (see DESIGN.md "Layout").

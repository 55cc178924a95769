"""The report card of a run: the `report` stage, its eval tables, its charts and its champion section."""

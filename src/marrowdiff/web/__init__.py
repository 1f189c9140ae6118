"""The review station: records (`store`), the work (`station`), the web layer (`app`)."""

"""Series data around the method: CSV files (csv_io), dates and steps (dates; calendars with closed
days or hours: calendars; rows in time order and their step: row_order), the paper's protocol,
splits and windows (protocol), a user's forecast window with its repairs (repair), synthetic series
(synthetic) and the window sets training and evaluation draw from (window_sets)."""

"""combkey.boards: one file per ECP5 board (clocks, pins, node tops), build and flash."""

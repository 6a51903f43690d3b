"""Opening the ESP32's UARTs (the P1 port, the RS485 line), loaded for the open only.

esp32.Platform.open_uart() and open_rs485() load this module, open the UART
and drop it again (esp32._open): a meter or a Modbus line is opened once per
boot, so the code that sets the pins and the UART up is not kept on the heap
of the running controller; esp32.py keeps Esp32Uart and Esp32Rs485, what
reads and writes. unix_line.py is the same for the unix port.

open_uart(board, baud, data_bits, parity, stop_bits, invert_rx) -> esp32.Esp32Uart
open_rs485(board, baud, data_bits, parity, stop_bits) -> esp32.Esp32Rs485
    `board` the board description (boards/*.json); the rest as
    esp32.Platform.open_uart() / open_rs485() (their docstrings). ValueError
    for settings no UART supports.
"""

import machine

from micropython import const

from . import common
from .esp32 import Esp32Rs485, Esp32Uart

# UART receive ring (allocated by ESP-IDF, not on the Python heap): a DSMR 5
# telegram is up to ~3 KB every second, and the loop may pause for a while.
_UART_RXBUF = const(4096)
# RS485 receive ring: the longest Modbus RTU frame is 256 bytes.
_RS485_RXBUF = const(512)


def open_uart(board, baud, data_bits, parity, stop_bits, invert_rx):
    common.check_line(baud, data_bits, parity, stop_bits)
    pins = {"rx": board["p1_rx"]}  # and the other keywords of this UART
    tx = board.get("p1_tx")
    if tx is not None:
        # Without "tx" the port drives its default TX pin (esp32.py's module doc).
        pins["tx"] = tx
    pins["invert"] = machine.UART.INV_RX if invert_rx else 0
    uart = _uart(board["p1_uart"], baud, data_bits, parity, stop_bits, _UART_RXBUF, pins)
    request = board.get("p1_request_pin")
    if request is not None:
        # Data Request high = "send telegrams" (DSMR P1 pin 2).
        request = machine.Pin(request, machine.Pin.OUT, value=1)
    return Esp32Uart(uart, request)


def open_rs485(board, baud, data_bits, parity, stop_bits):
    common.check_line(baud, data_bits, parity, stop_bits)
    for pin in board.get("init_high") or ():
        # The transceiver's supply and enables (the T-CAN485: boost, RE, /SHDN).
        machine.Pin(pin, machine.Pin.OUT, value=1)
    pins = {"tx": board["rs485_tx"], "rx": board["rs485_rx"]}
    uart = _uart(board["rs485_uart"], baud, data_bits, parity, stop_bits, _RS485_RXBUF, pins)
    de = board.get("rs485_de")
    if de is not None:
        de = machine.Pin(de, machine.Pin.OUT, value=0)  # receive
    return Esp32Rs485(uart, de)


def _uart(number, baud, data_bits, parity, stop_bits, rxbuf, more):
    # machine.UART `number` read without waiting (timeout=0); `more`: its pins (and invert).
    return machine.UART(
        number, baudrate=baud, bits=data_bits, parity=parity, stop=stop_bits, rxbuf=rxbuf, timeout=0, **more
    )

"""An ATM90E32AS metering IC as the firmware's unix SPI fake sees it: a register image behind 32-bit accesses over TCP.

The chip (Atm90e32Chip) follows the facts of docs/configuration.md
("ATM90E32 over SPI"): an access is a 16-bit address word (bit 15 set =
read, the register in bits 9-0) and a 16-bit data word, MSB first;
SoftReset (70H) <- 789AH restores the defaults (metering off); writes other
than SoftReset and CfgRegAccEn (7FH) are taken only while CfgRegAccEn holds
55AAH; LastSPIData (78H) holds the data word of the last other access.
Metering (MeterEn = 1) fills UrmsA-C (0.01 V), IrmsA-C (0.001 A, scaled by
IgainX / the clamp's calibrated gain, as the chip's RMS scales with its
gain), PmeanA-C (signed, 1 W) with PmeanALSB-CLSB (bits 15-8 = 1/256 W) and
Freq (0.01 Hz) from the site's signed currents (import positive), at
power factor 1.

Atm90e32Emulator serves one chip on 127.0.0.1 (the firmware's
platform/unix_spi.py connects to it): each 4 bytes in are answered with
4 bytes out, the data word in the last two. `mode`: "ok"; "ones" / "zeros"
(every word FFFFH / 0000H: the chip unpowered, MISO pulled up or down);
"mute" (no answer: the fake's deadline passes).
"""

import socket
import threading

METER_EN = 0x00
MMODE0 = 0x33
MMODE1 = 0x34
SOFT_RESET = 0x70
LAST_SPI_DATA = 0x78
CFG_REG_ACC_EN = 0x7F
PMEAN_A = 0xB1
PMEAN_A_LSB = 0xC1
URMS_A = 0xD9
IRMS_A = 0xDD
FREQ = 0xF8
UGAIN_A = 0x61

# The gains at which this emulator's inputs read true (the firmware's defaults: ESPHome's component).
CALIBRATED_UGAIN = 41820
CALIBRATED_IGAIN = 25498


class Atm90e32Chip:
    """The register image and the access rules (module doc); `writes` logs every accepted write (register, word)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.currents_ma = [0, 0, 0]
        self.voltage_mv = [230000, 230000, 230000]
        self.freq_centi_hz = 5000
        self.mode = "ok"
        self.writes = []
        self.resets = 0
        self.reset()

    def reset(self):
        """Power-on / SoftReset defaults: metering off, registers 0, configuration locked."""
        self.regs = [0] * 1024
        self.regs[UGAIN_A] = self.regs[UGAIN_A + 4] = self.regs[UGAIN_A + 8] = CALIBRATED_UGAIN
        self.regs[UGAIN_A + 1] = self.regs[UGAIN_A + 5] = self.regs[UGAIN_A + 9] = CALIBRATED_IGAIN
        self.last = 0

    def set_site(self, currents_ma, voltage_mv=None, freq_centi_hz=None):
        """The mains the chip sees: per-phase signed currents (mA, import positive), voltages (mV), frequency."""
        with self.lock:
            self.currents_ma = list(currents_ma) + [0] * (3 - len(currents_ma))
            if voltage_mv is not None:
                self.voltage_mv = list(voltage_mv)
            if freq_centi_hz is not None:
                self.freq_centi_hz = freq_centi_hz

    def _measure(self):
        regs = self.regs
        metering = regs[METER_EN] == 1
        for phase in range(3):
            if not metering:
                regs[URMS_A + phase] = regs[IRMS_A + phase] = regs[PMEAN_A + phase] = regs[PMEAN_A_LSB + phase] = 0
                continue
            volts = self.voltage_mv[phase]
            amps = self.currents_ma[phase]
            ugain = regs[UGAIN_A + 4 * phase]
            igain = regs[UGAIN_A + 4 * phase + 1]
            regs[URMS_A + phase] = min(0xFFFF, abs(volts) * ugain // CALIBRATED_UGAIN // 10)
            regs[IRMS_A + phase] = min(0xFFFF, abs(amps) * igain // CALIBRATED_IGAIN)
            p256 = round(volts * amps * 256 / 1e6)  # W in 1/256, power factor 1, sign of the current
            p256 = max(-0x800000, min(0x7FFFFF, p256))
            regs[PMEAN_A + phase] = (p256 >> 8) & 0xFFFF
            regs[PMEAN_A_LSB + phase] = (p256 & 0xFF) << 8
        regs[FREQ] = self.freq_centi_hz if metering else 0

    def access(self, frame):
        """One 32-bit access (4 bytes in) -> the 4 bytes the chip shifts out (the data word in the last two)."""
        with self.lock:
            if self.mode == "ones":
                return b"\xff\xff\xff\xff"
            if self.mode == "zeros":
                return b"\x00\x00\x00\x00"
            address = frame[0] << 8 | frame[1]
            register = address & 0x3FF
            word = frame[2] << 8 | frame[3]
            if address & 0x8000:
                if register == LAST_SPI_DATA:
                    value = self.last
                else:
                    self._measure()
                    value = self.regs[register]
                    self.last = value
                return bytes((0, 0, value >> 8, value & 0xFF))
            if register == SOFT_RESET:
                if word == 0x789A:
                    self.resets += 1
                    self.reset()
                    self.writes.append((register, word))
                return b"\x00\x00\x00\x00"
            self.last = word
            if register == CFG_REG_ACC_EN or self.regs[CFG_REG_ACC_EN] == 0x55AA:
                self.regs[register] = word
                self.writes.append((register, word))
            return b"\x00\x00\x00\x00"


class Atm90e32Emulator:
    """One chip served on 127.0.0.1:`port` (0 = a free one), a connection at a time, until stop()."""

    def __init__(self, port=0):
        self.chip = Atm90e32Chip()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(2)
        self.server.settimeout(0.2)  # accept() wakes to see stop()
        self.port = self.server.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.accesses = 0
        self._stopped = False
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self):
        while not self._stopped:
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            with conn:
                buf = b""
                while not self._stopped:
                    try:
                        data = conn.recv(64)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    buf += data
                    while len(buf) >= 4:
                        frame, buf = buf[:4], buf[4:]
                        if self.chip.mode == "mute":
                            continue
                        self.accesses += 1
                        try:
                            conn.sendall(self.chip.access(frame))
                        except OSError:
                            break

    def stop(self):
        self._stopped = True
        try:
            self.server.close()
        except OSError:
            pass

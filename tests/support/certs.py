"""Test certificates made with `cryptography` (no tests here): a CA, a server certificate
for 127.0.0.1, and leaf certificates with chosen subjectAltName URIs and DNS names.

    ca_key, ca_crt = make_ca("Test CA")
    key, crt = make_leaf("ctl", ca_key, ca_crt, uris=["urn:bbf:usp:id:self::ctl"], dns=["ctl.example"])
    files = write(d, "ctl", key, crt)   # {"crt.der", "key.der", "crt.pem", "key.pem"} -> path
"""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(cn, pub, issuer):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2)))


def make_ca(cn):
    k = ec.generate_private_key(ec.SECP256R1())
    c = (_builder(cn, k.public_key(), _name(cn))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .sign(k, hashes.SHA256()))
    return k, c


def make_leaf(cn, ca_key, ca_crt, uris=(), dns=(), ips=(), critical=False, names=None):
    """A leaf signed by ca_key. names: GeneralName objects to use instead of uris/dns/ips."""
    k = ec.generate_private_key(ec.SECP256R1())
    b = (_builder(cn, k.public_key(), ca_crt.subject)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if names is None:
        names = ([x509.DNSName(n) for n in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
                 + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips])
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=critical)
    return k, b.sign(ca_key, hashes.SHA256())


def make_server(ca_key, ca_crt):
    """A server certificate that verifies as 127.0.0.1 / localhost (dtls.connect checks it)."""
    return make_leaf("server", ca_key, ca_crt, dns=["localhost"], ips=["127.0.0.1"])


def write(d, name, key, crt):
    out = {}
    for ext, data in (("crt.der", crt.public_bytes(DER)), ("crt.pem", crt.public_bytes(PEM)),
                      ("key.der", key.private_bytes(DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption())),
                      ("key.pem", key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))):
        p = os.path.join(str(d), "%s.%s" % (name, ext))
        with open(p, "wb") as f:
            f.write(data)
        out[ext] = p
    return out


def write_ca(d, name, crt):
    p = os.path.join(str(d), name + ".der")
    with open(p, "wb") as f:
        f.write(crt.public_bytes(DER))
    return p

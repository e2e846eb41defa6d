"""Plain-text rendering of invoices."""

from decimal import Decimal

from models import Invoice, LineItem, money

TAX_RATE = Decimal("0.20")


def format_line(item: LineItem) -> str:
    return f"{item.quantity:>3} x {item.description} @ {item.unit_price} = {item.subtotal}"


def totals(invoice: Invoice) -> tuple[Decimal, Decimal, Decimal]:
    net = sum((item.subtotal for item in invoice.items), Decimal("0.00"))
    tax = money(net * TAX_RATE)
    return net, tax, net + tax


def render(invoice: Invoice) -> str:
    net, tax, gross = totals(invoice)
    lines = [f"Invoice {invoice.number} for {invoice.customer}", ""]
    lines += [format_line(item) for item in invoice.items]
    lines += ["", f"Net:   {net}", f"Tax:   {tax}", f"Total: {gross}"]
    return "\n".join(lines)

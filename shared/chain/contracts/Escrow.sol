// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Escrow with a lifecycle the contract enforces itself.
/// @notice Created -> Approved -> Completed, or Created/Approved -> Refunded.
///         Collateral is native ETH (asset = address(0)); the obligation is in USD with 8 decimals,
///         the same scale as Chainlink's USD price feeds.
contract Escrow {
    enum State { None, Created, Approved, Completed, Refunded }

    struct Deal {
        address depositor;
        address beneficiary;
        address asset;
        uint256 amount;
        uint256 obligationUsd;
        uint64 deadline;
        State state;
    }

    uint8 public constant USD_DECIMALS = 8;
    address public constant NATIVE_ASSET = address(0);

    uint256 public nextEscrowId = 1;
    mapping(uint256 => Deal) public deals;

    event EscrowCreated(
        uint256 indexed escrowId,
        address indexed depositor,
        address indexed beneficiary,
        address asset,
        uint256 amount,
        uint256 obligationUsd,
        uint64 deadline
    );
    event EscrowApproved(uint256 indexed escrowId, address indexed approver);
    event EscrowCompleted(uint256 indexed escrowId, address indexed beneficiary, uint256 amount);
    event EscrowRefunded(uint256 indexed escrowId, address indexed depositor, uint256 amount);

    error InvalidState(uint256 escrowId, State current);
    error NotAllowed(uint256 escrowId, address caller);
    error InvalidTerms();

    /// @notice Lock msg.value as collateral for an obligation owed to `beneficiary`.
    function create(address beneficiary, uint256 obligationUsd, uint64 deadline)
        external
        payable
        returns (uint256 escrowId)
    {
        if (msg.value == 0 || beneficiary == address(0) || deadline <= block.timestamp) {
            revert InvalidTerms();
        }
        escrowId = nextEscrowId++;
        deals[escrowId] = Deal(msg.sender, beneficiary, NATIVE_ASSET, msg.value, obligationUsd, deadline, State.Created);
        emit EscrowCreated(escrowId, msg.sender, beneficiary, NATIVE_ASSET, msg.value, obligationUsd, deadline);
    }

    /// @notice The beneficiary accepts the terms.
    function approve(uint256 escrowId) external {
        Deal storage deal = _inState(escrowId, State.Created);
        if (msg.sender != deal.beneficiary) revert NotAllowed(escrowId, msg.sender);
        deal.state = State.Approved;
        emit EscrowApproved(escrowId, msg.sender);
    }

    /// @notice The depositor releases the collateral to the beneficiary.
    function complete(uint256 escrowId) external {
        Deal storage deal = _inState(escrowId, State.Approved);
        if (msg.sender != deal.depositor) revert NotAllowed(escrowId, msg.sender);
        deal.state = State.Completed;
        emit EscrowCompleted(escrowId, deal.beneficiary, deal.amount);
        _send(deal.beneficiary, deal.amount);
    }

    /// @notice The depositor takes the collateral back: before approval, or after the deadline.
    function refund(uint256 escrowId) external {
        Deal storage deal = deals[escrowId];
        bool refundable = deal.state == State.Created
            || (deal.state == State.Approved && block.timestamp > deal.deadline);
        if (!refundable) revert InvalidState(escrowId, deal.state);
        if (msg.sender != deal.depositor) revert NotAllowed(escrowId, msg.sender);
        deal.state = State.Refunded;
        emit EscrowRefunded(escrowId, deal.depositor, deal.amount);
        _send(deal.depositor, deal.amount);
    }

    function _inState(uint256 escrowId, State expected) private view returns (Deal storage deal) {
        deal = deals[escrowId];
        if (deal.state != expected) revert InvalidState(escrowId, deal.state);
    }

    function _send(address to, uint256 amount) private {
        (bool ok, ) = to.call{value: amount}("");
        require(ok, "transfer failed");
    }
}

// SPDX-License-Identifier: Apache-2.0
// Test fixture for the chain-auth plugin's token gates: the two balance reads a gate makes,
// ERC-721's `balanceOf(owner)` and ERC-1155's `balanceOf(account, id)`, over plain counters.
// Not a real token (no transfers, no approvals); anyone may mint and burn.
pragma solidity ^0.8.20;

contract Ticket {
    mapping(address => uint256) private tickets;
    mapping(uint256 => mapping(address => uint256)) private balances1155;

    /// ERC-721 style: how many tickets `owner` holds.
    function balanceOf(address owner) external view returns (uint256) {
        return tickets[owner];
    }

    /// ERC-1155 style: how many of token `id` `account` holds.
    function balanceOf(address account, uint256 id) external view returns (uint256) {
        return balances1155[id][account];
    }

    function mint(address to) external {
        tickets[to] += 1;
    }

    /// Takes one ticket away (reverts when `from` has none).
    function burnFrom(address from) external {
        tickets[from] -= 1;
    }

    function mint1155(address to, uint256 id, uint256 amount) external {
        balances1155[id][to] += amount;
    }
}
